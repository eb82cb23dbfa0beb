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

from densenet_deploy.errors import ArtifactError, DnxError

from .triton_inspect import ArtifactInfo, artifact_format, inspect_artifact  # noqa: F401 (public API)

log = logging.getLogger(__name__)

FORMATS = ("onnx", "plan", "openvino")
PLATFORMS = {"onnx": ("platform", "onnxruntime_onnx"), "plan": ("platform", "tensorrt_plan"),
             "openvino": ("backend", "openvino"), "python": ("backend", "python")}
MODEL_FILES = {"onnx": "model.onnx", "plan": "model.plan", "openvino": "model.xml"}
RUNNER_BACKENDS = {"onnx": "onnxruntime", "plan": "tensorrt", "openvino": "openvino"}
GROUPINGS = ("versions", "models")
KINDS = ("gpu", "cpu")
DEFAULT_MAX_BATCH = 8
DEFAULT_INSTANCES = 1
DEFAULT_QUEUE_DELAY_US = 100
PYTHON_MODEL_SOURCE = os.path.join(os.path.dirname(__file__), "triton_python_model.py")
# Triton looks models up by directory name and puts the name in URLs: keep it to portable characters.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


# --- config ---------------------------------------------------------------------------------------
def model_config_pb2():
    from densenet_deploy.deps import require

    return require("tritonclient.grpc.model_config_pb2", extra="triton", purpose="writing Triton model configs")


def resolve_max_batch(info: ArtifactInfo, max_batch: int | None) -> int:
    """Triton's max_batch_size: 0 for a fixed-batch artifact; for a plan at most its profile's max."""
    if info.batch is not None:
        if max_batch is not None:
            raise ArtifactError(f"{info.path} has a fixed batch of {info.batch}, so Triton cannot batch it "
                                f"(--max-batch {max_batch}); re-export it with `dnx export --batch dynamic`")
        return 0
    if info.profile_max is not None:
        if max_batch is not None and max_batch > info.profile_max:
            raise ArtifactError(f"--max-batch {max_batch} is larger than the optimisation profile of {info.path} "
                                f"(max batch {info.profile_max}); lower --max-batch or rebuild the plan with "
                                f"`dnx build-engine --max-batch {max_batch}`")
        return max_batch or info.profile_max
    return max_batch or DEFAULT_MAX_BATCH


def build_config(name: str, info: ArtifactInfo, *, max_batch: int, backend: str | None = None,
                 instances: int = 1, kind: str | None = None, preferred_batch=(), max_queue_delay_us: int = 100,
                 labels_file: str | None = None, all_versions: bool = False, parameters: dict | None = None):
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
    model_input = config.input.add(name=info.input_name, data_type=pb.DataType.Value(in_type),
                                   dims=[*fixed, *info.chw])
    if batched:
        # Triton accepts FORMAT_NCHW only with exactly 3 dims; a fixed-batch model has 4 (batch included).
        model_input.format = pb.ModelInput.FORMAT_NCHW
    model_output = config.output.add(name=info.output_name, data_type=pb.DataType.Value(out_type),
                                     dims=[*fixed, info.num_classes])
    if labels_file:
        model_output.label_filename = labels_file
    if batched:
        bad = [b for b in preferred_batch if not 1 <= b <= max_batch]
        if bad:
            raise DnxError(f"--preferred-batch {','.join(map(str, preferred_batch))}: sizes must lie in 1..{max_batch} "
                           "(the max batch)")
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
        raise DnxError(f"model name {name!r} is not usable in a Triton repository: use letters, digits, '_', '.' "
                       "and '-' (at most 128, not starting with '.' or '-')")
    return name


def _default_name(meta) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(meta.model)).lstrip(".-") or "model"


def check_repo(repo) -> str:
    repo = os.fspath(repo)
    if os.path.exists(repo) and not os.path.isdir(repo):
        raise DnxError(f"--repo {repo} is a file, not a directory; give a new or existing repository directory")
    parent = os.path.dirname(os.path.abspath(repo))
    if not os.path.isdir(parent):
        raise DnxError(f"cannot create repository {repo}: directory {parent} does not exist")
    return repo


def write_repository(artifacts, repo, name: str | None = None, max_batch: int | None = None,
                     instances: int | None = None, kind: str | None = None, preferred_batch=None,
                     max_queue_delay_us: int | None = None, version: int | None = None, as_: str = "versions",
                     backend: str | None = None) -> dict:
    """Write (or update) a Triton model repository at `repo` serving `artifacts`.

    Several artifacts become versions 1, 2, ... of one model (`as_="versions"`, all served; they must share
    format and I/O) or separate models named NAME_<format>_<precision> (`as_="models"`). Other models in an
    existing repository are left alone; an existing model gets the new versions (a version number that
    exists is replaced) provided its inputs/outputs and platform match. `backend="python"` writes dnx's
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
    if (instances is not None and instances < 1) or (version is not None and version < 1) or \
            (max_queue_delay_us is not None and max_queue_delay_us < 0):
        raise DnxError("--instances and --version must be at least 1, --max-queue-delay-us at least 0")
    if name is not None:
        check_model_name(name)
    repo = check_repo(repo)
    infos = [inspect_artifact(a) for a in artifacts]
    model_config_pb2()  # fail on a missing extra before creating anything

    plans = _plan_models(infos, name, as_, version, repo)
    # Every config is built and checked before anything is written, so a refusal leaves the repo as it was.
    prepared = [_prepare_model(repo, model_name, versions, max_batch=max_batch, backend=backend,
                               instances=instances, kind=kind,
                               preferred_batch=None if preferred_batch is None else tuple(preferred_batch),
                               max_queue_delay_us=max_queue_delay_us, multi=as_ == "versions" and len(infos) > 1)
                for model_name, versions in plans]
    for p in prepared:  # only once nothing was refused: a refusal prints its one error line and nothing else
        _warn_parameters(p["versions"][0][1], backend)
    os.makedirs(repo, exist_ok=True)
    written = [_write_model(repo, p) for p in prepared]
    first = written[0]
    return {"repo": os.path.abspath(repo), "model": first["model"], "platform": first["platform"],
            "models": written}


def _plan_models(infos, name, as_, version, repo):
    """[(model name, [(version, info), ...])]: which artifact goes where."""
    if as_ == "versions" or len(infos) == 1:
        model = name or _default_name(infos[0].meta)
        check_model_name(model)
        ref = infos[0]
        for other in infos[1:]:
            if (other.format, other.input_name, other.output_name, other.chw, other.num_classes) != \
                    (ref.format, ref.input_name, ref.output_name, ref.chw, ref.num_classes):
                raise DnxError(f"{other.path} cannot be another version of {ref.path}: one Triton model has one "
                               "platform and one input/output signature; use --as models")
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
    return {"max_batch": config.max_batch_size or None,
            "instances": group.count if group is not None and group.count > 0 else None,
            "kind": kinds.get(group.kind) if group is not None else None,
            "preferred_batch": tuple(config.dynamic_batching.preferred_batch_size) if batching else None,
            "max_queue_delay_us": config.dynamic_batching.max_queue_delay_microseconds if batching else None}


def _resolve_options(config_path, versions, given: dict) -> dict:
    """Given options win; the rest come from the existing config (when there is one), then the defaults."""
    old = _existing_options(read_config(config_path)) if os.path.isfile(config_path) else {}
    kept = {k: old[k] for k, v in given.items() if v is None and old.get(k) is not None}
    if kept:
        log.info("%s: keeping the existing config's %s", config_path,
                 ", ".join(f"{k}={v}" for k, v in kept.items()))
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


def _prepare_model(repo, model, versions, *, max_batch, backend, instances, kind, preferred_batch,
                   max_queue_delay_us, multi) -> dict:
    info = versions[0][1]
    if backend is None:
        for _, vinfo in versions:
            if vinfo.format == "onnx" and vinfo.meta.precision == "bf16":
                # Triton's onnxruntime backend has no bf16 Conv kernels: such a model would fail at load time.
                raise DnxError(f"{vinfo.path} is a bf16 graph, which ONNX Runtime (Triton's onnxruntime_onnx "
                               "platform) cannot run; write it with --backend python (dnx runs it on OpenVINO) or "
                               f"serve the TensorRT plan built from it (`dnx build-engine "
                               f"{os.path.basename(vinfo.path)} -o model.plan`)")
    model_dir = os.path.join(repo, model)
    config_path = os.path.join(model_dir, "config.pbtxt")
    opts = _resolve_options(config_path, versions, {
        "max_batch": max_batch, "instances": instances, "kind": kind, "preferred_batch": preferred_batch,
        "max_queue_delay_us": max_queue_delay_us})
    batch = min(resolve_max_batch(i, opts["max_batch"]) for _, i in versions)
    # Versions of one model share one labels file: the first version's labels that exist.
    labels = next((list(i.meta.labels) for _, i in versions if i.meta.labels), None)
    if labels and len(labels) != info.num_classes:
        log.warning("%s: %d labels for %d classes; not writing labels.txt", info.path, len(labels), info.num_classes)
        labels = None
    existing = _existing_versions(model_dir)
    new_numbers = [v for v, _ in versions]
    served = sorted(set(existing) | set(new_numbers))
    # Versions share one config, so the parameters that decide how each version runs must agree.
    for _, vinfo in versions[1:]:
        if _pinned(_parameters(vinfo, backend, 1)) != _pinned(_parameters(info, backend, 1)):
            raise DnxError(f"{vinfo.path} cannot be another version of {info.path}: they need different "
                           f"{backend or info.format} backend parameters ({_describe(vinfo, backend)} vs "
                           f"{_describe(info, backend)}); use --as models")
    parameters = _parameters(info, backend, opts["instances"])
    config = build_config(model, info, max_batch=batch, backend=backend, instances=opts["instances"],
                          kind=opts["kind"], preferred_batch=opts["preferred_batch"],
                          max_queue_delay_us=opts["max_queue_delay_us"], labels_file="labels.txt" if labels else None,
                          all_versions=multi or len(served) > 1, parameters=parameters)
    if os.path.isfile(config_path):
        _check_compatible(config_path, read_config(config_path), config)
    return {"model": model, "versions": versions, "config": config, "labels": labels, "batch": batch,
            "backend": backend, "model_dir": model_dir, "config_path": config_path}


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


def runner_backend(info: ArtifactInfo) -> str:
    """The dnx runner backend that runs `info` in the python backend (as open_runner would pick it).

    A bf16 ONNX graph goes to OpenVINO: ONNX Runtime has no bf16 Conv kernels, OpenVINO runs bf16 on the CPU.
    """
    if info.format == "onnx" and info.meta.precision == "bf16":
        return "openvino"
    return RUNNER_BACKENDS[info.format]


def _parameters(info: ArtifactInfo, backend: str | None, instances: int) -> dict | None:
    if backend == "python":
        return {"dnx.artifact": MODEL_FILES[info.format], "dnx.backend": runner_backend(info),
                "dnx.metadata": json.dumps(info.meta.to_props(), sort_keys=True)}
    if info.format != "openvino":
        return None
    params = {"PERFORMANCE_HINT": "LATENCY"} if instances <= 1 else \
        {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(instances)}
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
            log.warning("%s is a bf16 graph: the python backend runs it with dnx's OpenVINO runner, so Triton's "
                        "Python environment needs pip install 'densenet-deploy[openvino]'", info.path)
    elif backend is None and info.format == "openvino" and info.inference_precision not in (None, "bf16"):
        log.warning("%s was built to run at inference precision %s, but Triton's openvino backend cannot ask "
                    "OpenVINO for it (its only precision parameter is HINT_BF16): on CPUs with AMX or "
                    "AVX512_BF16 OpenVINO runs it in bf16; write it with --backend python to keep %s",
                    info.path, info.inference_precision, info.inference_precision)


def _write_model(repo, prepared: dict) -> dict:
    model, versions, config, labels = prepared["model"], prepared["versions"], prepared["config"], prepared["labels"]
    backend, model_dir, info = prepared["backend"], prepared["model_dir"], versions[0][1]
    meta, new_numbers = info.meta, [v for v, _ in versions]
    staging = tempfile.mkdtemp(prefix=f".dnx-staging-{model}-", dir=repo)
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
            json.dump({"metadata": meta.to_props(), "format": info.format, "backend": backend or info.format,
                       "versions": {str(v): os.path.basename(i.path) for v, i in versions}}, fh, indent=2, sort_keys=True)
            fh.write("\n")
        _move_into_place(staging, model_dir, [str(v) for v in new_numbers])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    key, value = PLATFORMS[backend or info.format]
    log.info("wrote %s versions %s (%s %s)", model_dir, new_numbers, key, value)
    return {"model": model, "platform": value, "versions": new_numbers, "max_batch_size": prepared["batch"],
            "config": os.path.abspath(prepared["config_path"]), "labels": bool(labels), "path": os.path.abspath(model_dir)}


def _check_compatible(path, old, new) -> None:
    def signature(c):
        return (c.platform, c.backend, [(i.name, i.data_type, list(i.dims)) for i in c.input],
                [(o.name, o.data_type, list(o.dims)) for o in c.output])

    if signature(old) != signature(new):
        raise DnxError(f"{path} describes a model with another platform or input/output signature; give the new "
                       "artifact another --name (other models and versions were left as they were)")
    # The existing versions run with the config's parameters too: a new version must not change how they run.
    pinned_old = _pinned({k: v.string_value for k, v in old.parameters.items()})
    pinned_new = _pinned({k: v.string_value for k, v in new.parameters.items()})
    if pinned_old != pinned_new:
        def shown(params, key):
            return repr(params[key]) if key in params else "(unset)"

        changed = ", ".join(f"{k} {shown(pinned_old, k)} -> {shown(pinned_new, k)}"
                            for k in sorted(set(pinned_old) | set(pinned_new))
                            if pinned_old.get(k) != pinned_new.get(k))
        raise DnxError(f"{path}: the new version needs other backend parameters than the model's existing "
                       f"versions ({changed}); give the new artifact another --name (other models and versions "
                       "were left as they were)")


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
