"""Drawings of architectures (matplotlib, headless): a chain's layers with their output shapes,
a DAG's or a cell's graph. :func:`plot_architecture` writes one PNG and returns its path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from workbench.plots import out_path, pyplot, save_png


def _shape_text(shape: Sequence[int] | None) -> str:
    return "" if shape is None else " x ".join(str(int(s)) for s in shape)


def _module_shapes(model: Any, modules: Sequence[Any], input_shape: Sequence[int]) -> list[tuple[int, ...] | None]:
    """Output shape (without the batch) of each module in one forward pass of a dummy batch."""
    import torch

    shapes: list[tuple[int, ...] | None] = [None] * len(modules)
    hooks = []
    for i, m in enumerate(modules):

        def hook(_m, _inp, out, i=i):
            if isinstance(out, torch.Tensor):
                shapes[i] = tuple(out.shape[1:])

        hooks.append(m.register_forward_hook(hook))
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((2, *[int(s) for s in input_shape])))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _describe_module(m: Any) -> str:
    """A short label of one chain block (conv block, pool, flatten, dense)."""
    from torch import nn

    name = type(m).__name__
    if isinstance(m, nn.Sequential):
        mods = list(m)
        convs = [c for c in mods if isinstance(c, (nn.Conv1d, nn.Conv2d))]
        act = type(mods[-1]).__name__.lower()
        if convs:
            first = convs[0]
            k = first.kernel_size[0]
            if first.groups > 1:
                return f"sepconv {k}, {convs[-1].out_channels} ch, {act}"
            return f"conv {k}, {first.out_channels} ch, {act}"
        return name
    if isinstance(m, nn.Linear):
        return f"dense {m.out_features}"
    if "Pool" in name:
        kind = "max" if "Max" in name else "avg"
        return f"adaptive {kind}pool" if "Adaptive" in name else f"{kind}pool 2"
    return name.lower()


def architecture_rows(genotype: Any, input_shape: Sequence[int] | None, n_classes: int | None) -> list[tuple[str, str]]:
    """``(layer, output shape)`` rows of a chain network, from input to logits.

    Without an input shape the rows come from the genotype alone (no shapes).
    """
    layers = genotype.value.get("layers", []) if isinstance(genotype.value, dict) else []
    if input_shape is None or n_classes is None:
        rows = [("input", "")]
        for layer in layers:
            op = layer.get("op", "?")
            bits = [str(layer[k]) for k in ("kernel", "width") if k in layer]
            rows.append((" ".join([op, *bits]) + (f", {layer['act']}" if "act" in layer else ""), ""))
        return rows + [("classifier", "")]
    from torch import nn

    from workbench.nn.build import build_model

    model = build_model(genotype, input_shape, n_classes)
    blocks: list[Any] = []
    for part in ("features", "flat", "classifier"):
        blocks += list(getattr(model, part, []))
    shapes = _module_shapes(model, blocks, input_shape)
    rows = [("input", _shape_text(input_shape))]
    linears = [b for b in blocks if isinstance(b, nn.Linear)]
    for block, shape in zip(blocks, shapes):
        if type(block).__name__ in ("ReLU", "GELU", "Tanh"):  # a dense layer's activation
            rows[-1] = (f"{rows[-1][0]}, {type(block).__name__.lower()}", rows[-1][1])
            continue
        label = _describe_module(block)
        if block is (linears[-1] if linears else None):
            label = f"classifier ({block.out_features} classes)"
        rows.append((label, _shape_text(shape)))
    return rows


def _draw_rows(ax: Any, rows: Sequence[tuple[str, str]]) -> None:
    n = len(rows)
    for i, (label, shape) in enumerate(rows):
        y = n - 1 - i
        color = "#dbe9f6" if i not in (0, n - 1) else "#f6e3c8"
        ax.text(
            0.0,
            y,
            label,
            ha="center",
            va="center",
            fontsize=9,
            family="monospace",
            bbox={"boxstyle": "round,pad=0.4", "fc": color, "ec": "#4a6d8c"},
        )
        if shape:
            ax.text(0.62, y, shape, ha="left", va="center", fontsize=8, color="#333333")
        if i < n - 1:
            ax.annotate(
                "", xy=(0.0, y - 0.68), xytext=(0.0, y - 0.32), arrowprops={"arrowstyle": "->", "color": "#4a6d8c"}
            )
    ax.set_xlim(-1.0, 1.2)
    ax.set_ylim(-0.8, n - 0.2)
    ax.axis("off")


def _dag_layers(edges: Mapping[int, Sequence[int]], nodes: Sequence[int]) -> dict[int, int]:
    depth: dict[int, int] = {}
    for k in sorted(nodes):
        depth[k] = 1 + max((depth.get(i, 0) for i in edges.get(k, ())), default=-1)
    return depth


def _draw_graph(
    ax: Any,
    labels: Mapping[int, str],
    edges: Sequence[tuple[int, int, str]],
    dead: Sequence[int] = (),
    pos: Mapping[int, tuple[float, float]] | None = None,
) -> None:
    """A small DAG (nodes: id -> label; edges: (src, dst, text)), left to right by depth.

    Arrows run between the node boxes' edges; an edge that skips a depth level is curved so it
    does not cross the nodes in between.
    """
    incoming: dict[int, list[int]] = {}
    for s, d, _ in edges:
        incoming.setdefault(d, []).append(s)
    depth = _dag_layers(incoming, list(labels))
    if pos is None:
        by_depth: dict[int, list[int]] = {}
        for k, dep in depth.items():
            by_depth.setdefault(dep, []).append(k)
        pos = {}
        for dep, ks in by_depth.items():
            for j, k in enumerate(sorted(ks)):
                pos[k] = (dep * 2.2, (j - (len(ks) - 1) / 2) * 1.4)
    boxes = {}
    for k, label in labels.items():
        x, y = pos[k]
        fc = "#eeeeee" if k in dead else "#dbe9f6"
        boxes[k] = ax.text(
            x,
            y,
            label,
            ha="center",
            va="center",
            fontsize=8,
            family="monospace",
            zorder=3,
            bbox={"boxstyle": "round,pad=0.4", "fc": fc, "ec": "#4a6d8c"},
        )
    placed: list[tuple[float, float]] = []
    for s, d, text in edges:
        (x0, y0), (x1, y1) = pos[s], pos[d]
        skip = abs(depth[d] - depth[s]) > 1 and abs(y1 - y0) < 1e-9
        rad = -0.35 if skip else 0.0
        ax.annotate(
            "",
            xy=(0.5, 0.5),
            xycoords=boxes[d],
            xytext=(0.5, 0.5),
            textcoords=boxes[s],
            arrowprops={
                "arrowstyle": "-|>",
                "color": "#4a6d8c",
                "patchA": boxes[s].get_bbox_patch(),
                "patchB": boxes[d].get_bbox_patch(),
                "connectionstyle": f"arc3,rad={rad}",
            },
            zorder=2,
        )
        if text:
            for t in (0.5, 0.35, 0.65, 0.25, 0.75):
                mx, my = x0 + t * (x1 - x0), y0 + t * (y1 - y0) + (0.55 if skip else 0.0)
                if all(abs(mx - px) > 0.6 or abs(my - py) > 0.3 for px, py in placed):
                    break
            placed.append((mx, my))
            ax.text(
                mx,
                my,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="#7a3b00",
                zorder=4,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            )
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1.3, max(xs) + 1.3)
    ax.set_ylim(min(ys) - 1.2, max(ys) + 1.2)
    ax.axis("off")


def _dag_figure(plt: Any, genotype: Any, input_shape: Sequence[int] | None, n_classes: int | None):
    from workbench.space.dag import live_nodes, read_dag

    nodes, macro = read_dag(genotype)
    live = live_nodes(nodes)
    shapes: dict[int, str] = {}
    if input_shape is not None and n_classes is not None:
        from workbench.nn.build import build_model

        model = build_model(genotype, input_shape, n_classes)
        keys = [k for k in model.order]
        mods = [model.stem] + [model.blocks[str(k)] for k in keys]
        out = _module_shapes(model, mods, input_shape)
        shapes[0] = _shape_text(out[0])
        for k, s in zip(keys, out[1:]):
            shapes[k] = _shape_text(s)
    labels = {0: f"stem conv3\n{macro['width']} ch" + (f"\n{shapes[0]}" if 0 in shapes else "")}
    edges = []
    for k, node in enumerate(nodes, start=1):
        merge = f" ({node.merge})" if len(node.inputs) > 1 else ""
        labels[k] = f"{k}: {node.op}{merge}" + (f"\n{shapes[k]}" if k in shapes else "")
        edges += [(i, k, "") for i in node.inputs]
    n = len(nodes)
    labels[n + 1] = "global pool\n+ linear" + (f" -> {n_classes}" if n_classes else "")
    edges.append((n, n + 1, ""))
    dead = [k for k in range(1, n + 1) if k not in live]
    fig, ax = plt.subplots(figsize=(max(6, 2.0 * (n + 2)), 4.5))
    _draw_graph(ax, labels, edges, dead)
    inp = f"input {_shape_text(input_shape)}, " if input_shape else ""
    ax.set_title(f"DAG ({inp}width {macro['width']}; grey nodes do not reach the output)", fontsize=9)
    return fig


def _cell_figure(plt: Any, genotype: Any, input_shape: Sequence[int] | None, n_classes: int | None):
    from workbench.space.cell import EDGE_PAIRS, read_cell

    ops, macro = read_cell(genotype)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    labels = {0: "0: in", 1: "1", 2: "2", 3: "3: out"}
    edges = [(i, j, op) for (i, j), op in zip(EDGE_PAIRS, ops) if op != "none"]
    _draw_graph(ax1, labels, edges, pos={0: (0.0, 0.0), 1: (2.0, 1.4), 2: (3.2, -1.4), 3: (5.5, 0.35)})
    ax1.set_title("searched cell (node = sum of its incoming edges)", fontsize=9)
    rows: list[tuple[str, str]] = [("input", _shape_text(input_shape))]
    if input_shape is not None and n_classes is not None:
        from workbench.nn.build import build_model

        model = build_model(genotype, input_shape, n_classes)
        mods = [model.stem, *list(model.body), model.pool, model.head]
        shapes = _module_shapes(model, mods, input_shape)
        names = (
            ["stem conv3"]
            + ["cell" if type(m).__name__ == "Cell" else "reduction (stride 2)" for m in model.body]
            + ["global pool", f"linear ({n_classes} classes)"]
        )
        rows += [(name, _shape_text(s)) for name, s in zip(names, shapes)]
    else:
        for stage in range(macro["stages"]):
            if stage:
                rows.append(("reduction (stride 2)", ""))
            rows += [("cell", "")] * macro["cells_per_stage"]
        rows += [("global pool", ""), ("linear", "")]
    _draw_rows(ax2, rows)
    ax2.set_title(
        f"skeleton: {macro['stages']} stages x {macro['cells_per_stage']} cells, width {macro['width']}", fontsize=9
    )
    return fig


def plot_architecture(
    genotype_json: str,
    input_shape: Sequence[int] | None = None,
    n_classes: int | None = None,
    title: str = "",
    path: str | None = None,
) -> str | None:
    """A drawing of one architecture with its layer output shapes.

    Chain networks are drawn as a block diagram (one box per layer, the output shape next to
    it); DAGs as their graph; cells as the cell's graph beside the stacked skeleton. Shapes come
    from a forward pass of the network built for ``input_shape`` (omitted without it). Joint
    genotypes are drawn by their architecture, with the hyperparameters in the title; other
    spaces (tabular benchmarks) are not drawn.

    Returns:
        The PNG path; None for a space without a drawing.
    """
    from workbench.space.genotype import Genotype

    plt = pyplot()
    g = Genotype.from_json(genotype_json)
    subtitle = ""
    if g.space.startswith("joint-"):
        from workbench.space.registry import space_class

        cls = space_class(g.space)
        hp = cls.hyperparameters(g)
        subtitle = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items())
        g = cls.architecture(g)
    if g.space.startswith("chain-"):
        rows = architecture_rows(g, input_shape, n_classes)
        fig, ax = plt.subplots(figsize=(6.5, 0.55 * len(rows) + 1.0))
        _draw_rows(ax, rows)
    elif g.space.startswith("dag-"):
        fig = _dag_figure(plt, g, input_shape, n_classes)
    elif g.space.startswith("cell-"):
        fig = _cell_figure(plt, g, input_shape, n_classes)
    else:
        return None  # a table lookup's genotype has no drawing: its JSON is no picture
    fig.suptitle(title or f"best architecture ({g.space})", fontsize=10)
    if subtitle:
        fig.text(0.5, 0.01, subtitle, ha="center", fontsize=8)
    fig.tight_layout()
    return save_png(fig, out_path(path, "architecture.png"))
