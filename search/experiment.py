"""The record a search leaves beside Tune's experiment state, so that it can be resumed.

``vaesearch.json`` in the experiment directory holds the validated config, the YAML as written,
the run mode (its role) and where the MLflow parent run lives; every mode writes it.
``vaesearch resume EXPERIMENT`` reads it to rebuild the mode's trainable and to log into the
same parent run; ``vaesearch sync`` reads it to fill MLflow from Tune's storage. JSON (not
pickle): a record on a shared volume is data, never code.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs

RECORD_FILE = "vaesearch.json"
TUNER_FILE = "tuner.pkl"  # written by Ray Tune into every experiment directory


@dataclass
class ExperimentRecord:
    config: dict[str, Any]        # the validated config (JSON form)
    yaml_text: str | None
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    role: str                     # the run mode: a key of search.modes.MODES
    config_dir: str | None = None  # the YAML's directory: where plug-in modules and relative data paths are found

    def write(self, experiment_path: str) -> None:
        fs, path = _fs(experiment_path)
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(f"{path}/{RECORD_FILE}") as f:
            f.write(json.dumps(asdict(self), indent=2).encode())

    @classmethod
    def read(cls, experiment_path: str) -> ExperimentRecord:
        fs, path = _fs(experiment_path)
        info = fs.get_file_info(f"{path}/{RECORD_FILE}")
        if info.type != pyarrow.fs.FileType.File:
            tuner = fs.get_file_info(f"{path}/{TUNER_FILE}").type == pyarrow.fs.FileType.File
            what = ("a Tune experiment not started by vaesearch (or by a version before resume support)" if tuner
                    else "not a vaesearch experiment directory")
            raise FileNotFoundError(
                f"{experiment_path!r} is {what}: no {RECORD_FILE} there. Pass the directory printed as "
                f"'Tune results:' by `vaesearch run` (resources.storage_path/NAME-YYYYmmdd-HHMMSS)."
            )
        with fs.open_input_stream(f"{path}/{RECORD_FILE}") as f:
            data = json.loads(f.read().decode())
        return cls(**data)


def resolve_experiment(experiment: str, storage: str = "./ray_results") -> str:
    """An experiment directory, or a name under ``storage``; absolute (Tune needs that)."""
    if "://" in experiment:
        return experiment
    path = Path(experiment).expanduser()
    if not path.exists() and not path.is_absolute() and (Path(storage) / experiment).exists():
        path = Path(storage) / experiment
    return str(path.resolve())


def experiment_path(storage: str, name: str) -> str:
    return f"{storage.rstrip('/')}/{name}" if "://" in storage else str(Path(storage) / name)


def _fs(location: str) -> tuple[pyarrow.fs.FileSystem, str]:
    if "://" in location:
        return pyarrow.fs.FileSystem.from_uri(location)
    return pyarrow.fs.LocalFileSystem(), str(Path(location).expanduser().resolve())
