"""Options that several commands share, declared once: each flag has one name and one meaning everywhere.

- `--data SRC`: the images a step reads (calibration, parity checks, accuracy); `--calib-data` is an alias.
- `--samples N`: how many of them; each command says what it counts and its default.
- `--batch`: the batch size(s) runners are fed (bench, paper, verify); an export's fixed batch is
  `--fixed-batch`, a TensorRT profile's range `--min-batch/--opt-batch/--max-batch`, training's `--batch-size`.
- the gate options (`--max-rel-l2`, `--min-agreement`, ...): change any gate of the one policy table.
- `--precision fp32|fp16|bf16|int8` (`--fp16/--bf16/--int8` are aliases).
- `--json`, `-o/--output`, `--progress/--no-progress`, `--threads`, `--seed`.
"""

from __future__ import annotations

import sys

import click

from densenet_deploy.core.policy import PRECISIONS, GateOptions

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")

progress_option = click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bars on stderr [default: when stderr is a terminal and --json is not given].",
)

seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling and random data.")

threads_option = click.option("--threads", type=click.IntRange(1), help="CPU threads [default: the backend's].")


def output_option(required: bool = True, help: str = "Output file."):
    return click.option("-o", "--output", type=click.Path(dir_okay=False), required=required, help=help)


def data_option(help: str, required: bool = False, aliases: tuple[str, ...] = ()):
    return click.option("--data", *aliases, "data", metavar="SRC", required=required, help=help)


def samples_option(help: str, default: int | None = None):
    return click.option(
        "--samples", type=click.IntRange(1), default=default, show_default=default is not None, help=help
    )


GATE_FLAGS = (
    ("--max-rel-l2", "max_rel_l2", click.FloatRange(min=0), "Gate: largest ||cand - ref|| / ||ref||."),
    ("--min-agreement", "min_agreement", click.FloatRange(0, 1), "Gate: least top-1 agreement (0..1), real data."),
    (
        "--max-accuracy-drop",
        "max_accuracy_drop",
        click.FloatRange(min=0),
        "Gate: largest accuracy loss in points (labelled real data).",
    ),
    ("--min-centered-cosine", "min_centered_cosine", click.FloatRange(-1, 1), "Gate: least centered cosine."),
    ("--rel-atol", "rel_atol", click.FloatRange(min=0), "Gate: max |diff| bound relative to the logit range."),
    ("--atol", "atol", click.FloatRange(min=0), "Gate: absolute max |diff| bound (replaces --rel-atol)."),
)


def gate_options(command):
    """The gate flags of every command that gates; the command gets them as `gate_*` keyword arguments, and
    `gate_from(kwargs)` turns them into GateOptions [default: the policy table, docs/policy.md]."""
    for flag, name, kind, help_text in reversed(GATE_FLAGS):
        command = click.option(flag, f"gate_{name}", type=kind, help=help_text)(command)
    return command


def gate_from(kwargs: dict) -> GateOptions:
    """Pop the gate flags out of a command's keyword arguments."""
    return GateOptions(**{name: kwargs.pop(f"gate_{name}", None) for _, name, _, _ in GATE_FLAGS})


def precision_options(help: str):
    """`--precision P`, with `--fp16/--bf16/--int8` as aliases; the command gets `precision` (None: not given)."""

    def alias(value: str):
        def set_precision(ctx, param, flag):
            if flag:
                chosen = ctx.meta.setdefault("dnx_precision_aliases", [])
                chosen.append(value)
            return flag

        return click.option(
            f"--{value}",
            f"alias_{value}",
            is_flag=True,
            expose_value=False,
            callback=set_precision,
            help=f"Same as --precision {value}.",
        )

    def decorate(command):
        command = alias("int8")(alias("bf16")(alias("fp16")(command)))
        return click.option("--precision", type=click.Choice(PRECISIONS), help=help)(command)

    return decorate


def chosen_precision(precision: str | None) -> str | None:
    """--precision or one alias flag; a UsageError when two different ones are given."""
    aliases = click.get_current_context().meta.get("dnx_precision_aliases", [])
    named = set(([precision] if precision else []) + aliases)
    chosen = [p for p in PRECISIONS if p in named]
    if len(chosen) > 1:
        raise click.UsageError(f"choose one precision, not {' and '.join('--' + c for c in chosen)}")
    return chosen[0] if chosen else None


def progress_enabled(as_json: bool, progress: bool | None = None) -> bool:
    """Progress bars go to stderr: as asked, else only on a terminal and never with --json."""
    if progress is not None:
        return progress
    return not as_json and sys.stderr.isatty()


def given_options(ctx: click.Context) -> list[str]:
    """The parameter names the user typed (a default is not the user asking for anything)."""
    defaulted = (click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP, None)
    return [p.name for p in ctx.command.params if ctx.get_parameter_source(p.name) not in defaulted]
