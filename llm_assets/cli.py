"""`llm-assets`: generate text from the trained model; set up the project's Dagster instance."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from llm_assets import settings


def _generate(args: argparse.Namespace) -> int:
    from llm_assets.training.devices import DeviceUnavailableError, resolve_device
    from llm_assets.training.generate import generate_text, load_model

    model_dir = Path(args.model) if args.model else settings.paths_from_env().latest_model
    if not (model_dir / "config.json").is_file():
        print(
            f"llm-assets: no trained model in {model_dir}. Materialize trained_model first "
            "(see README) or pass --model DIR.",
            file=sys.stderr,
        )
        return 2
    try:
        device = resolve_device(args.device or settings.requested_device())
    except (DeviceUnavailableError, ValueError) as error:
        print(f"llm-assets: {error}", file=sys.stderr)
        return 2
    model, tokenizer = load_model(model_dir, device=device)
    continuation = generate_text(
        model,
        tokenizer,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k or None,
        seed=args.seed,
    )
    print(args.prompt + continuation)
    return 0


def _init(args: argparse.Namespace) -> int:
    from llm_assets.atomic import NoSymlinksError, require_symlinks
    from llm_assets.instance import init_instance

    project = Path(args.project_dir).resolve()
    paths = settings.paths_from_env()
    try:  # refused now rather than after the first download: every output is published behind a link
        for folder in (paths.data_dir, paths.checkpoint_dir):
            require_symlinks(folder if folder.is_absolute() else project / folder)
    except NoSymlinksError as error:
        print(f"llm-assets: {error}", file=sys.stderr)
        return 2
    home = init_instance(project)
    print(f"Dagster instance: {home} (DAGSTER_HOME written to {Path(args.project_dir).resolve() / '.env'})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="print a continuation of PROMPT from the trained model")
    gen.add_argument("prompt", help='the text to continue, e.g. "The fog lifted and"')
    gen.add_argument("--max-new-tokens", type=int, default=50, help="tokens to generate (default 50)")
    gen.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0 = greedy (default 0.8)")
    gen.add_argument("--top-k", type=int, default=50, help="sample from the k likeliest tokens; 0 = all (default 50)")
    gen.add_argument("--seed", type=int, default=None, help="random seed for a reproducible sample")
    gen.add_argument("--model", default=None, help="model folder (default: <checkpoint dir>/latest)")
    gen.add_argument("--device", default=None, choices=settings.DEVICE_CHOICES, help="default: LLM_DEVICE or auto")
    gen.set_defaults(run=_generate)

    init = commands.add_parser("init", help="create the project's persistent Dagster instance (.dagster_home, .env)")
    init.add_argument("--project-dir", default=".", help="the project root (default: the working directory)")
    init.set_defaults(run=_init)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
