"""``medsr models``: the generator and discriminator tables, with parameter counts.

``medsr models`` lists every architecture; ``medsr models ARCH`` shows its
hyper-parameters and their defaults.
"""

from __future__ import annotations

import argparse
import inspect
import json
from typing import Any

from medsr.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the model zoo (generators, discriminators, parameter counts)",
        description=(
            "List the generators and discriminators medsr can build, with their parameter "
            "counts (1 and 3 channels, default hyper-parameters) and supported scales; "
            "with ARCH, show that architecture's hyper-parameters."
        ),
    )
    parser.add_argument("arch", nargs="?", help="show the hyper-parameters of one architecture")
    parser.add_argument(
        "--scale", type=int, default=4, help="scale for the generator counts (default 4)"
    )
    parser.add_argument(
        "--format", choices=("text", "markdown", "json"), default="text", help="output format"
    )


def _table(headers: list[str], rows: list[list[str]], fmt: str) -> str:
    if fmt == "markdown":
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    numeric = [i for i, h in enumerate(headers) if h.startswith("params")]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _count(arch: str, params: dict[str, Any], discriminator: bool) -> int | None:
    from medsr.models import count_parameters_of

    try:
        return count_parameters_of(arch, params, discriminator=discriminator)
    except ConfigError:
        return None  # e.g. a scale the architecture does not support


def _fmt(count: int | None) -> str:
    return "-" if count is None else f"{count:,}"


def _collect(scale: int) -> dict[str, Any]:
    from medsr.models import DISCRIMINATORS, GENERATORS, PRETRAINED

    generators = []
    for name, cls in GENERATORS.items():
        counts = {c: _count(name, {"in_channels": c, "scale": scale}, False) for c in (1, 3)}
        generators.append(
            {
                "arch": name,
                "class": cls.__name__,
                "params_1ch": counts[1],
                "params_3ch": counts[3],
                "scales": list(cls.supported_scales),
                "paper": cls.paper,
            }
        )
    discriminators = []
    for name, cls in DISCRIMINATORS.items():
        counts = {c: _count(name, {"in_channels": c}, True) for c in (1, 3)}
        discriminators.append(
            {
                "arch": name,
                "class": cls.__name__,
                "paired": cls.paired,
                "params_1ch": counts[1],
                "params_3ch": counts[3],
                "paper": cls.paper,
            }
        )
    pretrained = [vars(p) | {"key": key} for key, p in PRETRAINED.items()]
    return {
        "scale": scale,
        "generators": generators,
        "discriminators": discriminators,
        "pretrained": pretrained,
    }


def _show_arch(arch: str, fmt: str) -> int:
    from medsr.models import DISCRIMINATORS, GENERATORS

    cls = GENERATORS.get(arch) or DISCRIMINATORS.get(arch)
    if cls is None:
        raise ConfigError(
            f"unknown architecture {arch!r}; known: {', '.join([*GENERATORS, *DISCRIMINATORS])}"
        )
    params = [
        (p.name, p.annotation, p.default)
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    if fmt == "json":
        print(
            json.dumps(
                {"arch": arch, "class": cls.__name__, "hparams": {n: d for n, _, d in params}},
                indent=2,
            )
        )
        return 0
    kind = "generator" if arch in GENERATORS else "discriminator"
    print(f"{arch}: {cls.__name__} ({kind}; {cls.paper})")
    if kind == "generator":
        print(f"scales: {', '.join(map(str, cls.supported_scales))}")
    print()
    rows = [[n, str(a), repr(d)] for n, a, d in params]
    print(_table(["hyper-parameter", "type", "default"], rows, fmt))
    doc = inspect.getdoc(cls) or ""
    if doc and fmt == "text":
        print()
        print(doc)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.arch:
        return _show_arch(args.arch, args.format)
    data = _collect(args.scale)
    if args.format == "json":
        print(json.dumps(data, indent=2))
        return 0
    title = "#### " if args.format == "markdown" else ""
    print(f"{title}Generators (parameters at x{args.scale}, default hyper-parameters)\n")
    rows = [
        [
            g["arch"],
            g["class"],
            _fmt(g["params_1ch"]),
            _fmt(g["params_3ch"]),
            ", ".join(map(str, g["scales"])),
        ]
        for g in data["generators"]
    ]
    print(_table(["arch", "class", "params (1 ch)", "params (3 ch)", "scales"], rows, args.format))
    print(f"\n{title}Discriminators\n")
    rows = [
        [
            d["arch"],
            d["class"],
            "yes" if d["paired"] else "no",
            _fmt(d["params_1ch"]),
            _fmt(d["params_3ch"]),
        ]
        for d in data["discriminators"]
    ]
    print(
        _table(
            ["arch", "class", "paired (LR, HR)", "params (1 ch)", "params (3 ch)"],
            rows,
            args.format,
        )
    )
    print(f"\n{title}Pretrained weights\n")
    if data["pretrained"]:
        rows = [
            [
                p["key"],
                p["tag"] or "-",
                p["arch"],
                f"x{p['scale']}",
                str(p["in_channels"]),
                p["training_data"],
                p["license"],
            ]
            for p in data["pretrained"]
        ]
        print(
            _table(
                ["name", "tag", "arch", "scale", "channels", "trained on", "license"],
                rows,
                args.format,
            )
        )
    else:
        print(
            "none shipped yet. Load your own with medsr.models.load(folder), or official "
            "ESRGAN/Real-ESRGAN weights with medsr.models.load_official_esrgan(path)."
        )
    print(
        "\n--model fast / --model quality pick the weights with that tag at the scale; "
        "details of one architecture: medsr models ARCH"
    )
    return 0
