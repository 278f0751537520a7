"""``gpunet weights convert|import|download|list|verify``: manage pretrained weights and the cache."""
from __future__ import annotations

import argparse
import os

from ._flags import add_json, add_model
from ._fmt import format_table, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="pretrained weights: convert, import, download, list, verify the cache",
                       description="Manage pretrained weights. Cache: $GPUNET_HOME/weights "
                                   "(default ~/.cache/gpunet/weights).")
    ws = p.add_subparsers(dest="weights_command", metavar="ACTION")
    p.set_defaults(handler=lambda a: (p.print_help(), 2)[1])

    c = ws.add_parser("convert", help="NVIDIA .pth.tar/zip -> safetensors with gpunet key names")
    add_model(c, "hub model, e.g. gpunet-0")
    c.add_argument("src", help="NVIDIA's NGC zip, the .pth.tar inside it, or any checkpoint")
    c.add_argument("dst", help="output .safetensors file")
    c.add_argument("--source", help="where SRC came from, stored in the metadata (default: its file name)")
    c.add_argument("--manifest", help="also add/update the 'safetensors' variant in this manifest file "
                                      "(created from the active manifest if missing)")
    c.add_argument("--hf-repo", help="with --manifest: Hugging Face repo id the file is uploaded to")
    c.add_argument("--hf-revision", help="with --hf-repo (required): pinned revision, a 40-hex commit hash")
    c.add_argument("--url", help="with --manifest: a plain URL the file is served from")
    c.add_argument("--prefer", action="store_true", help="with --manifest: make it the default variant")
    add_json(c, "the file written (and the manifest entry)")
    c.set_defaults(handler=_convert)

    i = ws.add_parser("import", help="put a hand-downloaded weights file (NGC zip, .pth.tar, .safetensors) "
                                     "into the cache, after checking it fits the architecture")
    add_model(i, "hub model the file is for, e.g. gpunet-0")
    i.add_argument("path", help="the weights file (NGC zip, .pth.tar, .safetensors)")
    i.add_argument("--variant", help="manifest variant (default: by file type)")
    add_json(i, "the cache record")
    i.set_defaults(handler=_import)

    d = ws.add_parser("download", help="fetch a model's weights into the cache now")
    add_model(d, "hub model, e.g. gpunet-0")
    d.add_argument("--variant", help="manifest variant (default: best available)")
    add_json(d, "the cached file")
    d.set_defaults(handler=_download)

    ls = ws.add_parser("list", help="what is in the cache")
    add_json(ls, "the cache records")
    ls.set_defaults(handler=_list)

    v = ws.add_parser("verify", help="re-hash cached files against their records (exit 1 on any failure)")
    add_model(v, "only this model (default: every cached file)", optional=True)
    v.add_argument("--deep", action="store_true", help="also load every file into its architecture")
    add_json(v, "one record per file")
    v.set_defaults(handler=_verify)


def _convert(args) -> int:
    from gpunet._io import atomic_write_text
    from gpunet.weights import convert_to_safetensors, load_manifest
    from gpunet.weights.convert import variant_for_conversion
    from gpunet.weights.manifest import is_commit

    if (args.hf_repo or args.url or args.prefer) and not args.manifest:
        raise ValueError("--hf-repo / --url / --prefer describe a manifest entry: pass --manifest PATH too")
    if args.hf_repo and not is_commit(args.hf_revision):
        raise ValueError(f"--hf-revision {args.hf_revision!r}: a Hugging Face source must pin a 40-hex commit "
                         f"hash (a branch or tag can move to other bytes)")
    res = convert_to_safetensors(args.name, args.src, args.dst, source=args.source)
    report = {k: res[k] for k in ("path", "size", "sha256")}
    print(f"wrote {res['path']} ({res['size']} bytes)")
    print(f"sha256 {res['sha256']}")
    if args.manifest:
        manifest = load_manifest(args.manifest if os.path.exists(args.manifest) else None)
        manifest.path = args.manifest
        var = variant_for_conversion(manifest, res["metadata"]["gpunet_model"], res, hf_repo=args.hf_repo,
                                     hf_revision=args.hf_revision,
                                     hf_filename=os.path.basename(args.dst) if args.hf_repo else None, url=args.url)
        atomic_write_text(args.manifest, manifest.with_variant(var, prefer=args.prefer).to_json())
        print(f"updated {args.manifest}: {var.model} variant {var.name!r}")
        report["manifest"] = {"path": args.manifest, "model": var.model, "variant": var.name}
    if args.json:
        print_json(report)
    return 0


def _import(args) -> int:
    from gpunet.weights import import_weights

    rec = import_weights(args.name, args.path, variant=args.variant)
    if args.json:
        print_json(rec)
        return 0
    print(f"imported {rec['model']} ({rec['variant']}) -> {rec['path']}")
    print(f"sha256 {rec['sha256']}")
    return 0


def _download(args) -> int:
    from gpunet.weights import fetch_weights

    path, var = fetch_weights(args.name, args.variant)
    if args.json:
        print_json({"model": var.model, "variant": var.name, "path": str(path)})
        return 0
    print(f"{var.model} ({var.name}): {path}")
    return 0


def _list(args) -> int:
    from gpunet.weights import cache_root, list_cached

    recs = list_cached()
    if args.json:
        print_json(recs)
        return 0
    if not recs:
        print(f"no weights cached in {cache_root()}")
        return 0
    rows = [(r.get("model"), r.get("variant"), r.get("size"), (r.get("sha256") or "-")[:16],
             r.get("verified_by"), r.get("path")) for r in recs]
    print(format_table(rows, ["model", "variant", "bytes", "sha256", "verified by", "path"], align="llrlll"))
    return 0


def _verify(args) -> int:
    from gpunet.weights import cache_root, verify_cached

    res = verify_cached(args.name, deep=args.deep)
    if args.json:
        print_json(res)
    elif not res:
        print(f"no weights cached in {cache_root()}")
    else:
        rows = [(r["model"], r["variant"], "ok" if r["ok"] else "FAIL", r["problem"] or "", r["path"]) for r in res]
        print(format_table(rows, ["model", "variant", "status", "problem", "path"], align="lllll"))
    return 0 if all(r["ok"] for r in res) else 1
