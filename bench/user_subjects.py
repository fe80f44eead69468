"""Subjects users prepared from their own videos (``bench prepare path.mp4 --name ID``), found by the subject
registry from the preparation record ``$BENCH_HOME/prepared/<id>.json`` alone (no preparation code is imported)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import home, media
from bench.contracts import SubjectSpec


def user_subject(subject_id: str) -> SubjectSpec | None:
    """The registry entry of a subject the user prepared, or None."""
    unsafe = "/" in subject_id or "\\" in subject_id or subject_id.startswith(".")  # never a path outside prepared/
    pointer = home.prepared_pointer(subject_id)
    if unsafe or not pointer.is_file():
        return None
    record = json.loads(pointer.read_text())
    return SubjectSpec(id=subject_id, description=f"prepared by the user from {record['video']}",
                       video_path=str(evaluation_video(subject_id, record)))


def evaluation_video(subject_id: str, record: dict[str, Any]) -> Path:
    """The video a user-prepared subject is scored against: the source itself when ingest kept its frames as
    decoded, else a lossless Matroska of the ingested (cropped, resized) frames and audio, written once per ingest
    result, so that renders and ground truth share one frame space."""
    ingest = Path(record["folders"]["ingest"])
    if json.loads((ingest / "stage.json").read_text())["outputs"]["policy"] == "kept as decoded":
        return Path(record["video"])
    path = home.prepared_pointer(subject_id).with_name(f"{subject_id}.{ingest.name}.mkv")
    if not path.is_file():
        media.write_video(path, media.open_frames(ingest / "frames"), media.read_wav(ingest / "audio.wav"), lossless=True)
    return path
