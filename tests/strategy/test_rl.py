"""The token view of genotypes and the RL controller (REINFORCE / PPO)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import InvalidGenotype, UserError
from workbench.space.registry import make_space
from workbench.strategy.backoff import backoff_asks
from workbench.strategy.base import ORIGIN_TRANSFER, Observation
from workbench.strategy.registry import make_strategy
from workbench.strategy.rl import WARM_JUDGE_ASKS, WARM_QUANTILE, ReinforceController
from workbench.strategy.tokens import TokenCodec, codec_names, make_codec

SPACES = {
    "chain": {"max_layers": 4, "kernels": [3, 5], "widths": [8, 16], "dense_widths": [16, 32]},
    "chain6": {"max_layers": 6},
    "cell": {},
    "dag": {},
    "dag-small": {"max_nodes": 3, "min_nodes": 2, "ops": ["conv3", "identity"]},
    "nbgraph": {"dataset": "cora"},
    "nbgraph-proteins": {"dataset": "proteins"},
}
# codecs whose token sequences are the space's own spelling (encode(decode(t)) == t)
EXACT_TOKENS = {"chain", "chain6", "cell", "dag", "dag-small"}


def _space(name: str):
    return make_space(name.split("-")[0].rstrip("6"), **SPACES[name])


_CACHE: dict[str, tuple] = {}


def _space_and_codec(name: str) -> tuple:
    if name not in _CACHE:
        space = _space(name)
        _CACHE[name] = (space, make_codec(space))
    return _CACHE[name]


@pytest.mark.parametrize("name", sorted(SPACES))
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mutations=st.integers(0, 3))
def test_codec_round_trip(name, seed, mutations):
    space, codec = _space_and_codec(name)
    assert isinstance(codec, TokenCodec) and codec.lossless
    rng = np.random.default_rng(seed)
    g = space.sample(rng)
    assert codec.decode(codec.encode(g)) == g  # the space's own samples come back exactly
    for _ in range(mutations):
        g = space.mutate(g, rng)
    back = codec.decode(codec.encode(g))
    assert back.key == g.key
    space.validate(back)
    # any allowed token sequence decodes to a member, and re-encodes consistently
    tokens = codec.random_tokens(rng)
    h = codec.decode(tokens)
    space.validate(h)
    assert codec.decode(codec.encode(h)) == h
    if name in EXACT_TOKENS:
        assert codec.encode(h) == tokens
    steps = codec.steps(tokens)
    assert len(steps) == len(tokens)
    assert all(s.mask.any() and s.mask[t] for s, t in zip(steps, tokens))


@pytest.mark.parametrize("base", [{"kind": "chain", "max_layers": 3}, {"kind": "dag"}, {"kind": "cell"}])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_joint_codec_round_trip_on_the_grid(base, seed):
    from workbench.space.joint import JointSpace

    space = make_space("joint", base=base)
    codec = make_codec(space)
    assert codec is not None and not codec.lossless
    rng = np.random.default_rng(seed)
    g = space.mutate(space.sample(rng), rng)
    tokens = codec.encode(g)
    back = codec.decode(tokens)
    assert JointSpace.architecture(back).key == JointSpace.architecture(g).key
    hp, hp_back = JointSpace.hyperparameters(g), JointSpace.hyperparameters(back)
    assert hp_back["batch_size"] == hp["batch_size"] and hp_back["epochs"] == hp["epochs"]
    for name in ("lr", "weight_decay"):  # nearest grid point: within half a grid step (log)
        lo, hi = space.ranges[name]
        step = (np.log(hi) - np.log(lo)) / (len(codec.values[name]) - 1)
        assert abs(np.log(hp_back[name]) - np.log(hp[name])) <= step / 2 + 1e-2
    assert codec.encode(back) == tokens and codec.decode(codec.encode(back)) == back
    r = codec.random_tokens(rng)
    assert codec.encode(codec.decode(r)) == r


def test_codec_registry_and_bad_sequences():
    assert {"chain-v1", "cell-v1", "dag-v1", "nbgraph-v1", "joint-v1"} <= set(codec_names())
    space, codec = _space_and_codec("cell")
    with pytest.raises(InvalidGenotype, match="incomplete"):
        codec.decode([0, 1, 2])
    with pytest.raises(InvalidGenotype, match="too long"):
        codec.decode([0] * 7)
    with pytest.raises(InvalidGenotype, match="not allowed"):
        codec.decode([0, 1, 2, 3, 4, 9])
    chain_space, chain_codec = _space_and_codec("chain")
    with pytest.raises(InvalidGenotype, match="not allowed"):
        chain_codec.decode([chain_codec.heads[0].labels.index("stop")])  # no empty chain
    nb_space, nb_codec = _space_and_codec("nbgraph")
    skip = nb_codec.heads[1].labels.index("skip")
    with pytest.raises(InvalidGenotype, match="not allowed"):
        nb_codec.decode([0, skip, skip, skip, skip])  # never four skips
    proteins_space, proteins_codec = _space_and_codec("nbgraph-proteins")
    with pytest.raises(InvalidGenotype, match="not allowed"):
        proteins_codec.decode([0, proteins_codec.heads[1].labels.index("gat"), skip, skip, skip])
    with pytest.raises(InvalidGenotype):
        codec.encode(chain_space.sample(np.random.default_rng(0)))  # another space's genotype

    class Unknown:
        name = "unknown-v1"

    assert make_codec(Unknown()) is None  # type: ignore[arg-type]


# -- the controller ----------------------------------------------------------------------------

TARGET = ("conv3x3", "skip", "conv1x1", "avgpool3x3", "conv3x3", "none")


def _planted(g) -> float:
    """Number of cell edges that match a planted target cell."""
    from workbench.space.cell import read_cell

    return float(sum(a == b for a, b in zip(read_cell(g)[0], TARGET)))


def _drive(s, f, n: int, fail_every: int = 0) -> list[Observation]:
    obs = []
    for i in range(n):
        (p,) = s.ask(1)
        v = None if fail_every and i % fail_every == fail_every - 1 else f(p.genotype)
        o = Observation(p.genotype, v)
        s.tell([o])
        obs.append(o)
    return obs


def test_controller_beats_random_on_a_planted_cell():
    space = make_space("cell")
    result = {}
    for name, options in (("random", {}), ("rl", {}), ("rl-plain", {"elite": 0})):
        best, late = [], []
        for seed in range(2 if name == "rl-plain" else 3):
            s = make_strategy(name.split("-")[0], space, seed=seed, **options)
            values = [o.value for o in _drive(s, _planted, 60)]
            best.append(max(values))
            late.append(np.mean(values[-20:]))
        result[name] = (np.mean(best), np.mean(late))
    assert result["rl"][0] > result["random"][0]
    assert result["rl"][1] > result["random"][1] + 1.0  # it has learnt the target's edges
    assert result["rl-plain"][1] > result["random"][1]  # plain REINFORCE learns too, slower


def test_ppo_learns_on_chain_conv_count():
    space = make_space("chain")

    def convs(g) -> float:
        return float(sum(layer["op"] == "conv" for layer in g.value["layers"]))

    late = {}
    for name, options in (("random", {}), ("ppo", {"algorithm": "ppo"})):
        vals = []
        for seed in range(2):
            s = make_strategy("rl" if options else name, space, seed=seed, **options)
            vals.append(np.mean([o.value for o in _drive(s, convs, 48)][-16:]))
        late[name] = np.mean(vals)
    assert late["ppo"] > late["random"] + 1.0


def _weights(s: ReinforceController) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in s.policy.state_dict().items()}


@pytest.mark.parametrize(
    "options", [{}, {"algorithm": "ppo"}, {"algorithm": "ppo", "batch_size": 3}, {"codec": "preference"}]
)
def test_replay_gives_the_same_weights_at_any_tell_granularity(options):
    space = make_space("cell")
    original = make_strategy("rl", space, seed=11, **options)
    obs = _drive(original, _planted, 13, fail_every=4)
    expected = [p.genotype for p in original.ask(3)]
    weights = _weights(original)
    for chunks in ([13], [5, 1, 7], [2] * 6 + [1]):
        fresh = make_strategy("rl", space, seed=11, **options)
        at = 0
        for size in chunks:
            fresh.tell(obs[at : at + size])
            at += size
        assert fresh.updates == original.updates
        for k, v in _weights(fresh).items():
            assert torch.equal(v, weights[k]), k
        assert [p.genotype for p in fresh.ask(3)] == expected


def test_weights_depend_on_the_seed_only_and_leave_the_global_rng_alone():
    space = make_space("cell")
    state = torch.random.get_rng_state()
    a, b, c = (ReinforceController(space, seed=s) for s in (1, 1, 2))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(v, _weights(b)[k]) for k, v in _weights(a).items())
    assert any(not torch.equal(v, _weights(c)[k]) for k, v in _weights(a).items())
    assert [p.genotype for p in a.ask(4)] == [p.genotype for p in b.ask(4)]
    a.ask(2)
    assert all(torch.equal(v, _weights(b)[k]) for k, v in _weights(a).items())  # ask changes nothing


def test_failures_are_never_rewarded():
    space = make_space("cell")
    s = ReinforceController(space, seed=0)
    rng = np.random.default_rng(0)
    assert s._advantage(Observation(space.sample(rng), None)) < 0  # before any success
    for i in range(30):
        v = None if i % 3 == 2 else float(rng.random())
        adv = s._advantage(Observation(space.sample(rng), v))
        if v is None:
            assert adv <= 0


def test_converged_controller_still_proposes_new_genotypes():
    space = make_space("nbgraph", dataset="proteins")
    s = make_strategy("rl", space, seed=0, lr=0.2, resample=8)
    obs = _drive(s, lambda g: 1.0 if g.value["ops"].count("gcn") >= 2 else 0.0, 60)
    assert len({o.genotype.key for o in obs}) == 60


def test_preference_fallback_proposes_valid_distinct_genotypes():
    space = make_space("dag")
    s = make_strategy("rl", space, seed=4, codec="preference", candidates=4)
    assert s.codec is None
    obs = _drive(s, lambda g: float(len(g.value["nodes"])), 12, fail_every=5)
    props = s.ask(3, pending=[o.genotype for o in obs[:2]])
    keys = {p.genotype.key for p in props}
    assert len(keys) == 3 and not keys & {o.genotype.key for o in obs}
    for p in props:
        space.validate(p.genotype)


def test_warm_start_prior_and_pretrain():
    space = make_space("cell")
    target = space.make(list(TARGET))
    # prior genotypes are proposed first
    s = make_strategy("rl", space, seed=0, prior=[target])
    assert s.ask(1)[0].genotype == target
    # prior observations of another task train the controller before the first tell
    rng = np.random.default_rng(1)
    source = [Observation(g, _planted(g)) for g in (space.sample(rng) for _ in range(30))]
    source += [Observation(space.mutate(target, rng), 5.0) for _ in range(10)]
    warm = [make_strategy("rl", space, seed=k, prior=source, schedule="always") for k in range(2)]
    cold = [make_strategy("rl", space, seed=k) for k in range(2)]
    assert warm[0].updates == len(source) and cold[0].updates == 0
    score = [np.mean([o.value for o in _drive(s, _planted, 15)]) for s in warm]
    base = [np.mean([o.value for o in _drive(s, _planted, 15)]) for s in cold]
    assert np.mean(score) > np.mean(base) + 0.5
    # the same prior gives the same controller; pretrain() is the same rule
    again = make_strategy("rl", space, seed=0)
    again.pretrain(source[-12:])
    ref = make_strategy("rl", space, seed=0, prior=source[-12:], schedule="always")
    assert all(torch.equal(v, _weights(ref)[k]) for k, v in _weights(again).items())
    # genotypes of another space are skipped, not an error
    chain = make_space("chain")
    again.pretrain([Observation(chain.sample(rng), 1.0)])


def _source(space, sign: float) -> list[Observation]:
    """Another task's observations: the planted objective (``sign`` 1) or its reverse (-1)."""
    rng = np.random.default_rng(1)
    target = space.make(list(TARGET))
    genotypes = [space.sample(rng) for _ in range(30)] + [space.mutate(target, rng) for _ in range(10)]
    return [Observation(g, sign * _planted(g)) for g in genotypes]


def _drive_origins(s, n: int) -> tuple[list[float], list[str]]:
    values, origins = [], []
    for _ in range(n):
        (p,) = s.ask(1)
        values.append(_planted(p.genotype))
        origins.append(p.origin)
        s.tell([Observation(p.genotype, values[-1])])
    return values, origins


def test_warm_twin_proposes_by_the_backoff_rule():
    space = make_space("cell")
    source = _source(space, 1.0)
    s = make_strategy("rl", space, seed=0, prior=source)
    # the search's own controller starts cold; the twin is pre-trained on the prior
    assert s.updates == 0 and s.warm_twin is not None and s.warm_twin.updates == len(source)
    values, origins = _drive_origins(s, 20)
    warm = [i for i, o in enumerate(origins) if o == ORIGIN_TRANSFER]
    assert warm == backoff_asks(values, WARM_JUDGE_ASKS, WARM_QUANTILE)
    assert warm[0] == 0 and all(o in ("", ORIGIN_TRANSFER) for o in origins)
    # replay: a new strategy told the same observations proposes the same next genotype
    again = make_strategy("rl", space, seed=0, prior=source)
    again.tell([Observation(g, v) for g, v in zip([o.genotype for o in s.history], values)])
    assert again.ask(1)[0] == s.ask(1)[0]


def test_warm_twin_helps_with_a_good_prior_and_steps_aside_from_a_misleading_one():
    space = make_space("cell")
    n, seeds = 30, range(4)

    def run(prior, schedule="backoff"):
        out = [_drive_origins(make_strategy("rl", space, seed=k, prior=prior, schedule=schedule), n) for k in seeds]
        return np.mean([np.mean(v) for v, _ in out]), np.mean([o.count(ORIGIN_TRANSFER) for _, o in out])

    cold, _ = run([])
    good, _ = run(_source(space, 1.0))
    bad, bad_turns = run(_source(space, -1.0))
    always_bad, _ = run(_source(space, -1.0), "always")
    assert good > cold + 0.5  # the pre-trained twin finds the planted cell faster
    assert bad_turns <= 8  # a misleading twin gets few of the 30 asks (about log2 of them)
    assert bad > always_bad + 0.3  # and costs less than trusting it on every ask


@pytest.mark.parametrize(
    "options, match",
    [
        ({"schedule": "sometimes"}, "schedule"),
        ({"algorithm": "a2c"}, "algorithm"),
        ({"lr": 0}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"codec": "x"}, "codec"),
        ({"prior": [3]}, "prior"),
    ],
)
def test_bad_options_are_user_errors(options, match):
    with pytest.raises(UserError, match=match):
        make_strategy("rl", make_space("cell"), **options)
