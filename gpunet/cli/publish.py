"""``gpunet publish MODEL DIR``: write a timm / Hugging Face model folder, ``--push`` it to the Hub."""
from __future__ import annotations

import argparse
import os
import sys

from ._flags import add_json, add_model
from ._fmt import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "publish", help="write a timm / Hugging Face model folder (config.json, model.safetensors, README.md); "
                        "--push uploads it",
        description="Write MODEL as a folder timm reads as its own (timm.create_model('local-dir:DIR') / "
                    "'hf-hub:ORG/NAME'). A hub name publishes its published weights (downloaded once), a spec "
                    "file needs --checkpoint (or --random-init), a folder or hf-hub:ORG/NAME is re-written. "
                    "The Hub token is huggingface_hub's own (HF_TOKEN or `hf auth login`); it is never written.")
    add_model(p, "hub name (gpunet-0), spec file, model folder or hf-hub:ORG/NAME[@rev]", dest="model")
    p.add_argument("dir", help="output folder (created; its config.json / model.safetensors / README.md replaced)")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="the weights to publish: NVIDIA's .pth.tar, a timm training checkpoint, a state_dict or "
                        ".safetensors")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classifier size; must match the weights' (default: theirs)")
    p.add_argument("--random-init", action="store_true", help="publish untrained weights (the architecture only)")
    p.add_argument("--push", metavar="ORG/NAME", help="upload the folder to this Hugging Face Hub repository")
    p.add_argument("--revision", help="with --push: branch to commit to (default: main)")
    p.add_argument("--private", action="store_true", help="with --push: create the repository private")
    p.add_argument("--endpoint", help="with --push: Hub endpoint (default: huggingface_hub's, $HF_ENDPOINT)")
    add_json(p, "what was written (and pushed)")
    p.set_defaults(handler=cmd_publish)


def _weights_classes(args, spec) -> int:
    """The class count of the weights that will be published."""
    if args.checkpoint:
        from gpunet.checkpoint import extract_state_dict, read_checkpoint, to_gpunet_state_dict

        sd = to_gpunet_state_dict(extract_state_dict(read_checkpoint(args.checkpoint), args.checkpoint),
                                  spec, args.checkpoint)
        w = sd.get("classifier.weight")
        return int(w.shape[0]) if w is not None else 0
    return spec.num_classes


def _model(args):
    """The GPUNet to publish, with the weights the arguments name (never an untrained classifier
    by accident: ``--num-classes`` must match the weights unless ``--random-init``)."""
    import gpunet
    from gpunet.hub import folder_location, hub_pretrained_cfg
    from gpunet.registry import get_registry

    if args.random_init and args.checkpoint:
        raise ValueError("--random-init publishes untrained weights; drop --checkpoint (or --random-init)")
    spec = gpunet.load_spec(args.model)  # any of the three kinds; fails here naming what is wrong
    folder = folder_location(args.model) is not None
    path_like = os.path.isfile(args.model) or args.model.lower().endswith(".json") or "/" in args.model \
        or os.sep in args.model
    hub = not folder and not path_like
    if hub:
        args.model = get_registry().resolve_model(args.model)
    if args.random_init:
        if folder:
            raise ValueError("--random-init takes a hub name or a spec file; a model folder holds trained weights")
        model = gpunet.build_model(spec, num_classes=args.num_classes)
        if hub:
            model.pretrained_cfg = model.default_cfg = hub_pretrained_cfg(args.model)
        return model
    if not (args.checkpoint or hub or folder):
        raise ValueError(f"{args.model}: a spec file has no weights; pass --checkpoint FILE (or --random-init)")
    classes = _weights_classes(args, spec)
    if args.num_classes is not None and args.num_classes != classes:
        raise ValueError(f"num_classes {args.num_classes} differs from the weights' classifier ({classes} classes): "
                         f"the published classifier would be untrained; use --random-init for that")
    kwargs = dict(num_classes=classes)
    if args.checkpoint:
        return gpunet.get_model(args.model, checkpoint_path=args.checkpoint, **kwargs)
    return gpunet.get_model(args.model, pretrained=hub, **kwargs)


def cmd_publish(args) -> int:
    from gpunet.folders import CONFIG_NAME, README_NAME, WEIGHTS_NAME, folder_config, push_folder, save_pretrained

    if not args.push and (args.revision or args.private or args.endpoint):
        raise ValueError("--revision / --private / --endpoint describe the upload: pass --push ORG/NAME too")
    model = _model(args)
    save_pretrained(model, args.dir, repo_id=args.push)
    config = folder_config(model)
    result = dict(dir=os.path.abspath(args.dir), architecture=config["architecture"],
                  num_classes=config["num_classes"], weights=config["gpunet"]["weights"],
                  files=[CONFIG_NAME, WEIGHTS_NAME, README_NAME])
    if args.push:
        result["push"] = push_folder(args.dir, args.push, revision=args.revision, private=args.private,
                                     endpoint=args.endpoint)
    if args.json:
        print_json(result)
        return 0
    print(f"wrote {result['dir']} ({result['architecture']}, {result['num_classes']} classes; weights: "
          f"{result['weights']})")
    if args.push:
        p = result["push"]
        print(f"pushed to {p['endpoint']}/{p['repo_id']} revision {p['revision']} commit {p['commit']}")
    else:
        print(f"load it with timm.create_model('local-dir:{result['dir']}', pretrained=True)", file=sys.stderr)
    return 0
