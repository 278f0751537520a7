"""``gpunet list | query | info | cards``: browse the latency-tiered hub."""
from __future__ import annotations

import argparse
import sys

from ._flags import add_batch_size, add_gpu, add_json, add_model
from ._fmt import format_table, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="hub models (and devices with --devices)")
    p.add_argument("--devices", action="store_true", help="list devices with latency tiers instead")
    add_json(p, "the models (or devices)")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("query", help="models that fit a latency budget on a device, best top-1 first")
    p.add_argument("--max-latency-ms", type=float, default=None, help="latency budget in ms")
    add_gpu(p, "latency device (see `gpunet list --devices`; default gv100)", default="gv100", old=("--device",))
    p.add_argument("--min-top1", type=float, default=None, help="minimum ImageNet top-1 (%%)")
    dist = p.add_mutually_exclusive_group()
    dist.add_argument("--distilled", dest="distilled", action="store_const", const=True, default=None,
                      help="only models trained with distillation")
    dist.add_argument("--no-distilled", dest="distilled", action="store_const", const=False,
                      help="only models trained without distillation")
    add_batch_size(p, help="batch size of the latency figure (default 1)", old=("--batch",))
    p.add_argument("--engine", default=None, help="latency engine, e.g. 'pytorch' (default: the device's own)")
    add_json(p, "the fitting models")
    p.set_defaults(handler=cmd_query)

    p = sub.add_parser("info", help="one model: stage table, params, FLOPs, latencies")
    add_model(p, "hub model name, e.g. gpunet-0")
    add_json(p, "the summary")
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser("cards", help="(re)generate model cards from the registry")
    p.add_argument("--out", default="model_cards", help="output folder (default: model_cards)")
    p.add_argument("--check", action="store_true", help="only report stale cards; exit 1 if any")
    p.add_argument("--include-user", action="store_true",
                   help="include the user-local registry (default: packaged data only)")
    add_json(p, "the cards written (or stale)")
    p.set_defaults(handler=cmd_cards)


def cmd_list(args) -> int:
    from gpunet.registry import get_registry

    reg = get_registry()
    if args.devices:
        rows = [dict(id=d, **{k: v for k, v in reg.devices[d].items() if k != "origin"}) for d in reg.list_devices()]
        if args.json:
            print_json(rows)
        else:
            print(format_table([(r["id"], r.get("name"), r.get("engine"), r.get("precision"), r.get("kind"))
                                for r in rows], ["device", "name", "engine", "precision", "kind"]))
        return 0
    rows = []
    for n in reg.list_models():
        info = reg.model_info(n)
        rows.append(dict(name=n, top1=info.get("top1"), params=info.get("params"), flops=info.get("flops"),
                         resolution=info.get("resolution"), distilled=info.get("distilled", False),
                         family=info.get("family")))
    if args.json:
        print_json(rows)
    else:
        print(format_table([(r["name"], r["top1"], _m(r["params"]), _g(r["flops"]), r["resolution"],
                             "yes" if r["distilled"] else "no") for r in rows],
                           ["model", "top1", "params (M)", "FLOPs (G)", "res", "distilled"], align="lrrrrl"))
    return 0


def cmd_query(args) -> int:
    from gpunet.registry import query

    cards = query(max_latency_ms=args.max_latency_ms, gpu=args.gpu, min_top1=args.min_top1,
                  distilled=args.distilled, batch=args.batch_size, engine=args.engine)
    if args.json:
        print_json([c.to_dict() for c in cards])
        return 0
    if not cards:
        print(f"no model fits on {args.gpu}"
              + (f" within {args.max_latency_ms} ms" if args.max_latency_ms else ""), file=sys.stderr)
        return 0
    print(format_table([(c.name, c.latency_ms, c.top1, _m(c.params), c.resolution, c.engine, c.latency_kind)
                        for c in cards],
                       ["model", "latency (ms)", "top1", "params (M)", "res", "engine", "kind"], align="lrrrrll"))
    return 0


def cmd_info(args) -> int:
    from gpunet.cards import model_summary

    s = model_summary(args.name)
    if args.json:
        print_json(s)
        return 0
    print(f"{s['name']}  ({s.get('nvidia_name', '')})")
    print(f"  top-1 {s.get('top1')} %   params {_m(s.get('params'))} M   FLOPs {_g(s.get('flops'))} G   "
          f"resolution {s.get('resolution')}   family {s.get('family')}   teacher {s.get('teacher') or '-'}")
    print()
    print(format_table([(r["stage"], r["type"], r["blocks"], r["kernel"], r["stride"], r["expansion"], r["act"],
                         r["se"], r["channels"], r["output"]) for r in s["stages"]],
                       ["stage", "type", "n", "k", "s", "e", "act", "se", "channels", "out"], align="llrllllllr"))
    print()
    rows = [(dev, e["latency_ms"], e.get("batch", 1), e.get("precision"), e.get("engine"), e.get("kind"))
            for dev, entries in s["latency"].items() for e in entries]
    print(format_table(rows, ["device", "latency (ms)", "batch", "precision", "engine", "kind"], align="lrrlll"))
    return 0


def cmd_cards(args) -> int:
    from gpunet.cards import stale_cards, write_cards
    from gpunet.registry import Registry, get_registry

    reg = get_registry() if args.include_user else Registry()
    if args.check:
        stale = stale_cards(args.out, reg)
        if args.json:
            print_json({"out": args.out, "stale": list(stale)})
        elif stale:
            print(f"stale model cards in {args.out}: {', '.join(stale)} (run `gpunet cards --out {args.out}`)",
                  file=sys.stderr)
        else:
            print(f"model cards in {args.out} are up to date")
        return 1 if stale else 0
    written = [str(path) for path in write_cards(args.out, reg)]
    if args.json:
        print_json({"out": args.out, "written": written})
    else:
        print("\n".join(written))
    return 0


def _m(v):
    return None if v is None else f"{v / 1e6:.2f}"


def _g(v):
    return None if v is None else f"{v / 1e9:.2f}"
