"""dnx artifacts -> a Triton Inference Server model repository (config.pbtxt from the real ModelConfig schema).

Layout written for each model: ``REPO/NAME/config.pbtxt``, ``REPO/NAME/labels.txt`` (when the metadata has
class labels), ``REPO/NAME/dnx.json`` (the dnx metadata: preprocessing for clients) and
``REPO/NAME/VERSION/`` holding ``model.onnx`` (platform onnxruntime_onnx), ``model.plan`` (tensorrt_plan),
``model.xml``/``model.bin`` (backend openvino), or, with ``backend="python"``, ``model.py`` plus the artifact,
run by a dnx Runner inside Triton's python backend. The config is a ``model_config_pb2.ModelConfig`` message
printed with protobuf ``text_format``, so every field name and enum value is checked by the schema.
OpenVINO IRs get the openvino backend's ``parameters`` (performance hint, and HINT_BF16 for bf16 builds;
see the comment above ``OPENVINO_PINNED`` for what that backend can and cannot set).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass

from densenet_deploy.core.deps import require
from densenet_deploy.core.errors import ArtifactError, DnxError
from densenet_deploy.core.results import Result
from densenet_deploy.serve.artifacts import ArtifactInfo, artifact_format, inspect_artifact  # noqa: F401 (public API)

log = logging.getLogger(__name__)

FORMATS = ("onnx", "plan", "openvino")
PLATFORMS = {
    "onnx": ("platform", "onnxruntime_onnx"),
    "plan": ("platform", "tensorrt_plan"),
    "openvino": ("backend", "openvino"),
    "python": ("backend", "python"),
}
MODEL_FILES = {"onnx": "model.onnx", "plan": "model.plan", "openvino": "model.xml"}
RUNNER_BACKENDS = {"onnx": "onnxruntime", "plan": "tensorrt", "openvino": "openvino"}
GROUPINGS = ("versions", "models")
KINDS = ("gpu", "cpu")
DEFAULT_MAX_BATCH = 8
DEFAULT_INSTANCES = 1
DEFAULT_QUEUE_DELAY_US = 100
PYTHON_MODEL_SOURCE = os.path.join(os.path.dirname(__file__), "python_model.py")
# Characters that end a line for Triton's labels.txt reader or Python's str.splitlines.
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
# Triton looks models up by directory name and puts the name in URLs: keep it to portable characters.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


# --- config ---------------------------------------------------------------------------------------
def model_config_pb2():
    return require("tritonclient.grpc.model_config_pb2", extra="triton", purpose="writing Triton model configs")


def resolve_max_batch(info: ArtifactInfo, max_batch: int | None) -> int:
    """Triton's max_batch_size: 0 for a fixed-batch artifact; for a plan at most its profile's max.

    A plan built for one batch size (its sidecar's metadata batch, a profile with min = max) is a fixed-batch
    model too: Triton's TensorRT backend refuses max_batch_size > 0 for it. A plan whose profile starts above
    batch 1 is refused: the dynamic batcher hands it single requests, which that engine cannot run.
    """
    if info.batch is not None:
        if max_batch is not None:
            fix = (
                f"rebuild it from a dynamic-batch export with `dnx build-engine --min-batch 1 --max-batch {max_batch}`"
                if info.format == "plan"
                else "re-export it with `dnx export --batch dynamic`"
            )
            raise ArtifactError(
                f"{info.path} has a fixed batch of {info.batch}, so Triton cannot batch it "
                f"(--max-batch {max_batch}); {fix}"
            )
        return 0
    if info.profile_min is not None and info.profile_min > 1:
        raise ArtifactError(
            f"{info.path} was built for batch sizes {info.profile_min}..{info.profile_max} (its "
            "optimisation profile), but Triton's dynamic batcher also runs single requests (batch 1); "
            f"rebuild the plan with `dnx build-engine --min-batch 1 --max-batch {info.profile_max}`"
        )
    if info.profile_max is not None:
        if max_batch is not None and max_batch > info.profile_max:
            raise ArtifactError(
                f"--max-batch {max_batch} is larger than the optimisation profile of {info.path} "
                f"(max batch {info.profile_max}); lower --max-batch or rebuild the plan with "
                f"`dnx build-engine --max-batch {max_batch}`"
            )
        return max_batch or info.profile_max
    return max_batch or DEFAULT_MAX_BATCH


def build_config(
    name: str,
    info: ArtifactInfo,
    *,
    max_batch: int,
    backend: str | None = None,
    instances: int = 1,
    kind: str | None = None,
    preferred_batch=(),
    max_queue_delay_us: int = 100,
    labels_file: str | None = None,
    all_versions: bool = False,
    parameters: dict | None = None,
):
    """The ModelConfig message for model `name` serving `info` (see the README for what each field does)."""
    pb = model_config_pb2()
    engine = backend or info.format
    key, value = PLATFORMS[engine]
    config = pb.ModelConfig(name=name, max_batch_size=max_batch)
    setattr(config, key, value)
    # dnx's python model feeds the runner float32 and returns float32 logits, whatever the graph uses inside.
    in_type, out_type = ("TYPE_FP32", "TYPE_FP32") if engine == "python" else (info.input_type, info.output_type)
    batched = max_batch > 0
    fixed = () if batched else (info.batch,)
    model_input = config.input.add(name=info.input_name, data_type=pb.DataType.Value(in_type), dims=[*fixed, *info.chw])
    if batched:
        # Triton accepts FORMAT_NCHW only with exactly 3 dims; a fixed-batch model has 4 (batch included).
        model_input.format = pb.ModelInput.FORMAT_NCHW
    model_output = config.output.add(
        name=info.output_name, data_type=pb.DataType.Value(out_type), dims=[*fixed, info.num_classes]
    )
    if labels_file:
        model_output.label_filename = labels_file
    if batched:
        bad = [b for b in preferred_batch if not 1 <= b <= max_batch]
        if bad:
            raise DnxError(
                f"--preferred-batch {','.join(map(str, preferred_batch))}: sizes must lie in 1..{max_batch} "
                "(the max batch)"
            )
        config.dynamic_batching.preferred_batch_size.extend(sorted(set(preferred_batch)))
        config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    elif preferred_batch:
        raise DnxError(f"{info.path} has a fixed batch; --preferred-batch needs a dynamic batch axis")
    config.instance_group.add(count=instances, kind=_instance_kind(pb, engine, info, kind))
    if all_versions:
        config.version_policy.all.SetInParent()
    for k, v in (parameters or {}).items():
        config.parameters[k].string_value = v
    return config


def _instance_kind(pb, engine: str, info: ArtifactInfo, kind: str | None):
    gpu, cpu, auto = pb.ModelInstanceGroup.KIND_GPU, pb.ModelInstanceGroup.KIND_CPU, pb.ModelInstanceGroup.KIND_AUTO
    native = info.format
    if kind == "cpu" and native == "plan":
        raise DnxError(f"{info.path} is a TensorRT plan, which runs only on a GPU; drop --kind cpu")
    if kind == "gpu" and native == "openvino":
        raise DnxError(f"{info.path} is OpenVINO IR, which Triton's openvino backend runs on the CPU; drop --kind gpu")
    if kind:
        return gpu if kind == "gpu" else cpu
    if native == "plan":
        return gpu
    if engine == "python" or native == "openvino":
        return cpu
    return auto  # ONNX Runtime: GPU when the server has one, else CPU


def config_text(config) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def read_config(path):
    """Parse a config.pbtxt into a ModelConfig (raises ArtifactError when it does not fit the schema)."""
    from google.protobuf import text_format

    pb = model_config_pb2()
    try:
        with open(path) as fh:
            return text_format.Parse(fh.read(), pb.ModelConfig())
    except (OSError, text_format.ParseError) as exc:
        raise ArtifactError(f"{path} is not a readable Triton model config ({exc})") from exc


# --- repository -----------------------------------------------------------------------------------
def check_model_name(name: str) -> str:
    if not _NAME_RE.match(name or "") or name in (".", ".."):
        raise DnxError(
            f"model name {name!r} is not usable in a Triton repository: use letters, digits, '_', '.' "
            "and '-' (at most 128, not starting with '.' or '-')"
        )
    return name


def _default_name(meta) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(meta.model)).lstrip(".-") or "model"


def check_repo(repo) -> str:
    """`repo` when it is an existing writable directory or one that can be created in an existing directory."""
    repo = os.fspath(repo)
    if os.path.exists(repo):
        if not os.path.isdir(repo):
            raise DnxError(f"--repo {repo} is a file, not a directory; give a new or existing repository directory")
        if not os.access(repo, os.W_OK | os.X_OK):
            raise DnxError(f"--repo {repo}: the directory is not writable by this user")
        return repo
    parent = os.path.dirname(os.path.abspath(repo))
    if not os.path.isdir(parent):
        existing = parent
        while not os.path.exists(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        if os.path.exists(existing) and not os.path.isdir(existing):
            raise DnxError(f"cannot create repository {repo}: {existing} is a file, not a directory")
        raise DnxError(f"cannot create repository {repo}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DnxError(f"cannot create repository {repo}: directory {parent} is not writable by this user")
    return repo


def _create_repo(repo: str) -> None:
    # Some directories pass the checks above and still refuse new entries (/proc, /sys, read-only mounts,
    # and root, for whom os.access says yes to everything).
    try:
        os.makedirs(repo, exist_ok=True)
    except OSError as exc:
        raise DnxError(f"cannot create repository {repo}: {exc.strerror or exc}") from exc


def write_repository(
    artifacts,
    repo,
    name: str | None = None,
    max_batch: int | None = None,
    instances: int | None = None,
    kind: str | None = None,
    preferred_batch=None,
    max_queue_delay_us: int | None = None,
    version: int | None = None,
    as_: str = "versions",
    backend: str | None = None,
    replace: bool = False,
) -> RepositoryResult:
    """Write (or update) a Triton model repository at `repo` serving `artifacts`.

    Several artifacts become versions 1, 2, ... of one model (`as_="versions"`, all served; they must share
    format and I/O) or separate models named NAME_<format>_<precision> (`as_="models"`). Other models in an
    existing repository are left alone; an existing model gets the new versions provided its inputs/outputs
    and platform match. A `version` that exists is refused unless `replace`. Updating an existing model
    starts from its config.pbtxt and changes only the fields dnx writes (see `_merge_config`), so fields
    added by hand (model_warmup, parameters, a version policy, ...) stay. `backend="python"` writes dnx's
    python-backend model (a dnx Runner inside Triton) instead of the native backend. Nothing is left
    half-written: each model is assembled in a staging directory and moved into place.

    Serving options left at None (`max_batch`, `instances`, `kind`, `preferred_batch`, `max_queue_delay_us`)
    keep the existing model's config values when the model exists, so adding a version does not reset
    them; for a new model they get the defaults (max batch 8 or a plan's profile max, 1 instance, the
    format's kind, no preferred sizes, 100 us). Options that are given always win.
    """
    if not artifacts:
        raise DnxError("no artifact given")
    if as_ not in GROUPINGS:
        raise DnxError(f"--as {as_!r}: choose one of {', '.join(GROUPINGS)}")
    if backend not in (None, "python"):
        raise DnxError(f"--backend {backend!r}: only 'python' (dnx runner in Triton's python backend) is supported")
    if kind not in (None, *KINDS):
        raise DnxError(f"--kind {kind!r}: choose gpu or cpu")
    if (
        (instances is not None and instances < 1)
        or (version is not None and version < 1)
        or (max_queue_delay_us is not None and max_queue_delay_us < 0)
    ):
        raise DnxError("--instances and --version must be at least 1, --max-queue-delay-us at least 0")
    if name is not None:
        check_model_name(name)
    repo = check_repo(repo)
    infos = [inspect_artifact(a) for a in artifacts]
    model_config_pb2()  # fail on a missing extra before creating anything

    plans = _plan_models(infos, name, as_, version, repo)
    for model_name, versions in plans:
        _check_model_dir(repo, model_name, [v for v, _ in versions], explicit=version is not None, replace=replace)
    # Every config is built and checked before anything is written, so a refusal leaves the repo as it was.
    prepared = [
        _prepare_model(
            repo,
            model_name,
            versions,
            max_batch=max_batch,
            backend=backend,
            instances=instances,
            kind=kind,
            preferred_batch=None if preferred_batch is None else tuple(preferred_batch),
            max_queue_delay_us=max_queue_delay_us,
            multi=as_ == "versions" and len(infos) > 1,
        )
        for model_name, versions in plans
    ]
    for p in prepared:  # only once nothing was refused: a refusal prints its one error line and nothing else
        _warn_parameters(p["versions"][0][1], backend)
    _create_repo(repo)
    written = [_write_model(repo, p) for p in prepared]
    first = written[0]
    return RepositoryResult(os.path.abspath(repo), first["model"], first["platform"], written)


@dataclass
class RepositoryResult(Result):
    """The repository written: the first model's name and platform, and every model written (versions, max
    batch size, config path, labels)."""

    repo: str
    model: str
    platform: str
    models: list[dict]

    def __str__(self) -> str:
        lines = [f"repository {self.repo}"]
        for m in self.models:
            lines.append(
                f"  {m['model']:<28} {m['platform']:<18} versions {','.join(map(str, m['versions']))}  "
                f"max_batch_size {m['max_batch_size']}" + ("  labels" if m["labels"] else "")
            )
        return "\n".join(lines)


def _plan_models(infos, name, as_, version, repo):
    """[(model name, [(version, info), ...])]: which artifact goes where."""
    if as_ == "versions" or len(infos) == 1:
        model = name or _default_name(infos[0].meta)
        check_model_name(model)
        ref = infos[0]
        for other in infos[1:]:
            if (other.format, other.input_name, other.output_name, other.chw, other.num_classes) != (
                ref.format,
                ref.input_name,
                ref.output_name,
                ref.chw,
                ref.num_classes,
            ):
                raise DnxError(
                    f"{other.path} cannot be another version of {ref.path}: one Triton model has one "
                    "platform and one input/output signature; use --as models"
                )
        start = version or _next_version(os.path.join(repo, model))
        return [(model, [(start + i, info) for i, info in enumerate(infos)])]
    base = name or _default_name(infos[0].meta)
    plans, seen = [], set()
    for info in infos:
        model = f"{base}_{info.format}_{info.meta.precision}"
        suffix = 2
        while model in seen:
            model, suffix = f"{base}_{info.format}_{info.meta.precision}_{suffix}", suffix + 1
        seen.add(model)
        check_model_name(model)
        plans.append((model, [(version or _next_version(os.path.join(repo, model)), info)]))
    return plans


def _check_model_dir(repo: str, model: str, numbers: list[int], *, explicit: bool, replace: bool) -> None:
    """Refuse, before anything is staged, a model path dnx cannot write into and versions it would overwrite."""
    model_dir = os.path.join(repo, model)
    if not os.path.exists(model_dir):
        return
    if not os.path.isdir(model_dir):
        raise DnxError(
            f"{model_dir} exists and is not a directory, so model {model!r} cannot be written there; "
            "remove it or choose another --name"
        )
    for entry, want_dir in [
        *((str(n), True) for n in numbers),
        ("config.pbtxt", False),
        ("labels.txt", False),
        ("dnx.json", False),
    ]:
        path = os.path.join(model_dir, entry)
        if os.path.exists(path) and os.path.isdir(path) != want_dir:
            raise DnxError(
                f"{path} exists and is {'not ' if want_dir else ''}a directory; dnx writes "
                f"{'a version directory' if want_dir else 'a file'} there: remove it or choose another "
                "--name"
            )
    taken = sorted(set(numbers) & set(_existing_versions(model_dir)))
    if taken and not replace:
        shown = ", ".join(map(str, taken))
        hint = f"or leave out --version to add it as version {_next_version(model_dir)}" if explicit else ""
        raise DnxError(
            f"model {model!r} in {repo} already has version{'s' if len(taken) > 1 else ''} {shown} "
            f"({os.path.join(model_dir, str(taken[0]))}); pass --replace to overwrite "
            f"{'them' if len(taken) > 1 else 'it'}" + (f", {hint}" if hint else "")
        )


def _existing_versions(model_dir: str) -> list[int]:
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(d) for d in os.listdir(model_dir) if d.isdigit() and os.path.isdir(os.path.join(model_dir, d)))


def _next_version(model_dir: str) -> int:
    existing = _existing_versions(model_dir)
    return existing[-1] + 1 if existing else 1


def _existing_options(config) -> dict:
    """The serving options an existing config holds, in write_repository's terms (None: not set there)."""
    pb = model_config_pb2()
    group = config.instance_group[0] if config.instance_group else None
    kinds = {pb.ModelInstanceGroup.KIND_GPU: "gpu", pb.ModelInstanceGroup.KIND_CPU: "cpu"}
    batching = config.HasField("dynamic_batching")
    return {
        "max_batch": config.max_batch_size or None,
        "instances": group.count if group is not None and group.count > 0 else None,
        "kind": kinds.get(group.kind) if group is not None else None,
        "preferred_batch": tuple(config.dynamic_batching.preferred_batch_size) if batching else None,
        "max_queue_delay_us": config.dynamic_batching.max_queue_delay_microseconds if batching else None,
    }


def _resolve_options(config_path, versions, given: dict) -> dict:
    """Given options win; the rest come from the existing config (when there is one), then the defaults."""
    old = _existing_options(read_config(config_path)) if os.path.isfile(config_path) else {}
    kept = {k: old[k] for k, v in given.items() if v is None and old.get(k) is not None}
    if kept:
        log.info("%s: keeping the existing config's %s", config_path, ", ".join(f"{k}={v}" for k, v in kept.items()))
    opts = {**given, **kept}
    if opts["max_batch"] is not None and given["max_batch"] is None:
        # An inherited max batch is fitted to the new artifacts (fixed batch, a smaller plan profile)
        # instead of failing on a value the user never typed.
        limits = [i.profile_max for _, i in versions if i.profile_max is not None]
        if any(i.batch is not None for _, i in versions):
            opts["max_batch"] = None
        elif limits and opts["max_batch"] > min(limits):
            opts["max_batch"] = min(limits)
    if opts["preferred_batch"] is not None and given["preferred_batch"] is None:
        cap = opts["max_batch"] or DEFAULT_MAX_BATCH
        opts["preferred_batch"] = tuple(b for b in opts["preferred_batch"] if b <= cap)
    opts["instances"] = opts["instances"] or DEFAULT_INSTANCES
    opts["preferred_batch"] = opts["preferred_batch"] or ()
    if opts["max_queue_delay_us"] is None:
        opts["max_queue_delay_us"] = DEFAULT_QUEUE_DELAY_US
    return opts


def _prepare_model(
    repo, model, versions, *, max_batch, backend, instances, kind, preferred_batch, max_queue_delay_us, multi
) -> dict:
    info = versions[0][1]
    if backend is None:
        for _, vinfo in versions:
            if vinfo.format == "onnx" and vinfo.meta.precision == "bf16":
                # Triton's onnxruntime backend has no bf16 Conv kernels: such a model would fail at load time.
                raise DnxError(
                    f"{vinfo.path} is a bf16 graph, which ONNX Runtime (Triton's onnxruntime_onnx "
                    "platform) cannot run; write it with --backend python (dnx runs it on OpenVINO) or "
                    f"serve the TensorRT plan built from it (`dnx build-engine "
                    f"{os.path.basename(vinfo.path)} -o model.plan`)"
                )
            if vinfo.format == "onnx" and vinfo.ort_deployment:
                # Its com.microsoft ops and NCHWc layout are tied to the ONNX Runtime build and the CPU's vector
                # width it was optimised on; Triton's onnxruntime platform would load it without that check.
                raise DnxError(
                    f"{vinfo.path} is an ONNX Runtime deployment ({vinfo.ort_deployment}), optimised "
                    "for the CPU it was built on; Triton's onnxruntime_onnx platform cannot check that: "
                    "give `dnx triton` the plain export it was built from (Triton's ONNX Runtime "
                    "optimises it at load time), or write it with --backend python (dnx's runner "
                    "checks the CPU)"
                )
    model_dir = os.path.join(repo, model)
    config_path = os.path.join(model_dir, "config.pbtxt")
    opts = _resolve_options(
        config_path,
        versions,
        {
            "max_batch": max_batch,
            "instances": instances,
            "kind": kind,
            "preferred_batch": preferred_batch,
            "max_queue_delay_us": max_queue_delay_us,
        },
    )
    batch = min(resolve_max_batch(i, opts["max_batch"]) for _, i in versions)
    # Versions of one model share one labels file: the first version's labels that exist.
    labels = next((list(i.meta.labels) for _, i in versions if i.meta.labels), None)
    if labels and len(labels) != info.num_classes:
        log.warning("%s: %d labels for %d classes; not writing labels.txt", info.path, len(labels), info.num_classes)
        labels = None
    for i, label in enumerate(labels or ()):
        if any(c in str(label) for c in _LINE_BREAKS):
            source = next(vi.path for _, vi in versions if vi.meta.labels)
            raise DnxError(
                f"{source}: class label {i} ({str(label)!r}) contains a line break; Triton's labels.txt "
                "holds one label per line, so every later class would get the wrong label: give the "
                "model labels without line breaks (they come from the checkpoint's metadata)"
            )
    existing = _existing_versions(model_dir)
    new_numbers = [v for v, _ in versions]
    served = sorted(set(existing) | set(new_numbers))
    # Versions share one config, so the parameters that decide how each version runs must agree.
    for _, vinfo in versions[1:]:
        if _pinned(_parameters(vinfo, backend, 1)) != _pinned(_parameters(info, backend, 1)):
            raise DnxError(
                f"{vinfo.path} cannot be another version of {info.path}: they need different "
                f"{backend or info.format} backend parameters ({_describe(vinfo, backend)} vs "
                f"{_describe(info, backend)}); use --as models"
            )
    parameters = _parameters(info, backend, opts["instances"])
    config = build_config(
        model,
        info,
        max_batch=batch,
        backend=backend,
        instances=opts["instances"],
        kind=opts["kind"],
        preferred_batch=opts["preferred_batch"],
        max_queue_delay_us=opts["max_queue_delay_us"],
        labels_file="labels.txt" if labels else None,
        all_versions=multi or len(served) > 1,
        parameters=parameters,
    )
    if os.path.isfile(config_path):
        old = read_config(config_path)
        _check_compatible(config_path, old, config)
        config = _merge_config(old, config, new_numbers)
    return {
        "model": model,
        "versions": versions,
        "config": config,
        "labels": labels,
        "batch": batch,
        "backend": backend,
        "model_dir": model_dir,
        "config_path": config_path,
    }


# --- parameters -------------------------------------------------------------------------------------
# Triton's openvino backend reads only these keys from config.pbtxt `parameters` and passes them to
# OpenVINO (github.com/triton-inference-server/openvino_backend, README "Parameters" and
# src/openvino.cc ModelState::ParseParameters/ParseParameterHelper): PERFORMANCE_HINT
# (LATENCY | THROUGHPUT | CUMULATIVE_THROUGHPUT), NUM_STREAMS (AUTO | NUMA | n), INFERENCE_NUM_THREADS,
# COMPILATION_NUM_THREADS and HINT_BF16, whose only accepted value is YES (it sets
# ov::hint::inference_precision(bf16); any other value is an error). There is no key that sets f32 (or
# f16): an fp32 IR runs at OpenVINO's default precision, which is bf16 on CPUs with AMX/AVX512_BF16.
# Models, not instances, own the compiled model in that backend; each instance adds one infer request,
# so several instances need as many streams to run at once (the README's throughput example pairs
# `count: N` with NUM_STREAMS N), and one instance gets the one-stream LATENCY hint.
OPENVINO_PINNED = ("HINT_BF16",)
PYTHON_PINNED = ("dnx.artifact", "dnx.backend")
# Every `parameters` key dnx writes: on an update these follow the new config (a key dnx no longer writes,
# e.g. NUM_STREAMS after --instances 1, is dropped); any other key was added by hand and is kept.
DNX_PARAMETERS = ("PERFORMANCE_HINT", "NUM_STREAMS", *OPENVINO_PINNED, *PYTHON_PINNED, "dnx.metadata")


def runner_backend(info: ArtifactInfo) -> str:
    """The dnx runner backend that runs `info` in the python backend (as open_runner would pick it).

    A bf16 ONNX graph goes to OpenVINO: ONNX Runtime has no bf16 Conv kernels, OpenVINO runs bf16 on the CPU.
    """
    if info.format == "onnx" and info.meta.precision == "bf16":
        return "openvino"
    return RUNNER_BACKENDS[info.format]


def _parameters(info: ArtifactInfo, backend: str | None, instances: int) -> dict | None:
    if backend == "python":
        return {
            "dnx.artifact": MODEL_FILES[info.format],
            "dnx.backend": runner_backend(info),
            "dnx.metadata": json.dumps(info.meta.to_props(), sort_keys=True),
        }
    if info.format != "openvino":
        return None
    params = (
        {"PERFORMANCE_HINT": "LATENCY"}
        if instances <= 1
        else {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(instances)}
    )
    if info.inference_precision == "bf16":
        params["HINT_BF16"] = "YES"
    return params


def _pinned(parameters: dict | None) -> dict:
    """The parameters every version of one model must agree on (they decide how each version runs)."""
    return {k: v for k, v in (parameters or {}).items() if k in OPENVINO_PINNED + PYTHON_PINNED}


def _describe(info: ArtifactInfo, backend: str | None) -> str:
    if backend == "python":
        return f"{os.path.basename(info.path)} on the {runner_backend(info)} runner"
    return f"{os.path.basename(info.path)} at inference precision {info.inference_precision or 'default'}"


def _warn_parameters(info: ArtifactInfo, backend: str | None) -> None:
    if backend == "python" and runner_backend(info) != RUNNER_BACKENDS[info.format]:
        import importlib.util

        if importlib.util.find_spec("openvino") is None:
            log.warning(
                "%s is a bf16 graph: the python backend runs it with dnx's OpenVINO runner, so Triton's "
                "Python environment needs pip install 'densenet-deploy[openvino]'",
                info.path,
            )
    elif backend is None and info.format == "openvino" and info.inference_precision not in (None, "bf16"):
        log.warning(
            "%s was built to run at inference precision %s, but Triton's openvino backend cannot ask "
            "OpenVINO for it (its only precision parameter is HINT_BF16): on CPUs with AMX or "
            "AVX512_BF16 OpenVINO runs it in bf16; write it with --backend python to keep %s",
            info.path,
            info.inference_precision,
            info.inference_precision,
        )


def _write_model(repo, prepared: dict) -> dict:
    model, versions, config, labels = prepared["model"], prepared["versions"], prepared["config"], prepared["labels"]
    backend, model_dir, info = prepared["backend"], prepared["model_dir"], versions[0][1]
    meta, new_numbers = info.meta, [v for v, _ in versions]
    # Which file each version was made from: the existing dnx.json's entries for versions still there stay.
    sources = _existing_sources(model_dir)
    sources.update({str(v): os.path.basename(i.path) for v, i in versions})
    try:
        staging = tempfile.mkdtemp(prefix=f".dnx-staging-{model}-", dir=repo)
    except OSError as exc:
        raise DnxError(f"cannot write into repository {repo}: {exc.strerror or exc}") from exc
    try:
        # mkdtemp/mkstemp make 0700/0600 entries; a Triton container often runs as another user.
        os.chmod(staging, 0o755)
        for number, vinfo in versions:
            vdir = os.path.join(staging, str(number))
            os.makedirs(vdir, mode=0o755)
            copies = list(vinfo.files) + ([(PYTHON_MODEL_SOURCE, "model.py")] if backend == "python" else [])
            for src, dst in copies:
                shutil.copyfile(src, os.path.join(vdir, dst))
                os.chmod(os.path.join(vdir, dst), 0o644)
        with open(os.path.join(staging, "config.pbtxt"), "w") as fh:
            fh.write(config_text(config))
        if labels:
            with open(os.path.join(staging, "labels.txt"), "w") as fh:
                fh.write("\n".join(labels) + "\n")
        with open(os.path.join(staging, "dnx.json"), "w") as fh:
            json.dump(
                {
                    "metadata": meta.to_props(),
                    "format": info.format,
                    "backend": backend or info.format,
                    "versions": sources,
                },
                fh,
                indent=2,
                sort_keys=True,
            )
            fh.write("\n")
        _move_into_place(staging, model_dir, [str(v) for v in new_numbers])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    key, value = PLATFORMS[backend or info.format]
    log.info("wrote %s versions %s (%s %s)", model_dir, new_numbers, key, value)
    return {
        "model": model,
        "platform": value,
        "versions": new_numbers,
        "max_batch_size": prepared["batch"],
        "config": os.path.abspath(prepared["config_path"]),
        "labels": bool(labels),
        "path": os.path.abspath(model_dir),
    }


def _existing_sources(model_dir: str) -> dict:
    """{version: source file name} from an existing dnx.json, for versions whose directory still exists."""
    try:
        with open(os.path.join(model_dir, "dnx.json")) as fh:
            recorded = json.load(fh).get("versions") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    present = {str(v) for v in _existing_versions(model_dir)}
    return {str(k): v for k, v in recorded.items() if str(k) in present} if isinstance(recorded, dict) else {}


def _check_compatible(path, old, new) -> None:
    pb = model_config_pb2()

    def engine(c):
        return f"platform {c.platform}" if c.platform else f"backend {c.backend}" if c.backend else "no platform"

    if (old.platform, old.backend) != (new.platform, new.backend):
        if new.backend == "python":
            hint = "drop --backend python to add a version the way the model is served, or give"
        elif old.backend == "python":
            hint = "add --backend python to add a version to this dnx python-backend model, or give"
        else:
            hint = "give"
        raise DnxError(
            f"{path} serves its versions with {engine(old)}, but the new version needs {engine(new)} "
            f"and one Triton model has one backend; {hint} the new artifact another --name (other "
            "models and versions were left as they were)"
        )

    def tensors(c):
        return [
            (kind, t.name, pb.DataType.Name(t.data_type), list(t.dims))
            for kind, group in (("input", c.input), ("output", c.output))
            for t in group
        ]

    if tensors(old) != tensors(new):

        def shown(items):
            return "; ".join(f"{k} {n!r} {t} {d}" for k, n, t, d in items) or "none"

        raise DnxError(
            f"{path} describes a model with another input/output signature ({shown(tensors(old))}; the "
            f"new artifact has {shown(tensors(new))}); give the new artifact another --name (other models "
            "and versions were left as they were)"
        )
    # The existing versions run with the config's parameters too: a new version must not change how they run.
    pinned_old = _pinned({k: v.string_value for k, v in old.parameters.items()})
    pinned_new = _pinned({k: v.string_value for k, v in new.parameters.items()})
    if pinned_old != pinned_new:

        def shown(params, key):
            return repr(params[key]) if key in params else "(unset)"

        changed = ", ".join(
            f"{k} {shown(pinned_old, k)} -> {shown(pinned_new, k)}"
            for k in sorted(set(pinned_old) | set(pinned_new))
            if pinned_old.get(k) != pinned_new.get(k)
        )
        raise DnxError(
            f"{path}: the new version needs other backend parameters than the model's existing "
            f"versions ({changed}); give the new artifact another --name (other models and versions "
            "were left as they were)"
        )


def _merge_config(old, new, new_numbers: list[int]):
    """The existing config `old` with the fields dnx writes taken from `new`; every other field stays.

    dnx's fields: name, max_batch_size, the input's format and the output's label_filename (names, types and
    dims were checked to be equal), dynamic_batching's preferred sizes and queue delay, the first instance
    group's count and kind, and the `parameters` keys in DNX_PARAMETERS. A `specific` version policy gets the
    new version numbers; another policy set by hand stays, and a config without one gets dnx's.
    """
    pb = model_config_pb2()
    merged = pb.ModelConfig()
    merged.CopyFrom(old)
    merged.name = new.name
    merged.max_batch_size = new.max_batch_size
    for mine, theirs in zip(merged.input, new.input):
        mine.format = theirs.format
    for mine, theirs in zip(merged.output, new.output):
        mine.label_filename = theirs.label_filename
    if new.HasField("dynamic_batching"):
        batching = merged.dynamic_batching
        del batching.preferred_batch_size[:]
        batching.preferred_batch_size.extend(new.dynamic_batching.preferred_batch_size)
        batching.max_queue_delay_microseconds = new.dynamic_batching.max_queue_delay_microseconds
    else:
        merged.ClearField("dynamic_batching")
    group = merged.instance_group[0] if merged.instance_group else merged.instance_group.add()
    group.count, group.kind = new.instance_group[0].count, new.instance_group[0].kind
    if group.kind != pb.ModelInstanceGroup.KIND_GPU:
        del group.gpus[:]  # Triton refuses GPU ids in a CPU (or auto) instance group
    if merged.HasField("version_policy"):
        if merged.version_policy.HasField("specific"):
            served = sorted(set(merged.version_policy.specific.versions) | set(new_numbers))
            del merged.version_policy.specific.versions[:]
            merged.version_policy.specific.versions.extend(served)
    elif new.HasField("version_policy"):
        merged.version_policy.CopyFrom(new.version_policy)
    for key in [k for k in merged.parameters if k in DNX_PARAMETERS and k not in new.parameters]:
        del merged.parameters[key]
    for key, value in new.parameters.items():
        merged.parameters[key].CopyFrom(value)
    return merged


def _move_into_place(staging: str, model_dir: str, versions: list[str]) -> None:
    if not os.path.isdir(model_dir):
        os.rename(staging, model_dir)
        os.makedirs(staging)  # the caller's cleanup expects it
        return
    for v in versions:
        target = os.path.join(model_dir, v)
        if os.path.isdir(target):
            os.rename(target, os.path.join(staging, f"replaced-{v}"))
        os.rename(os.path.join(staging, v), target)
    for fname in ("config.pbtxt", "labels.txt", "dnx.json"):
        src = os.path.join(staging, fname)
        if os.path.isfile(src):
            os.replace(src, os.path.join(model_dir, fname))
