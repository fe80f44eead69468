"""The 3D face models the Head Motion Tracker fits to landmarks (SyncTalk §3.3, Eq. 5-6).

Two models, both as model points in metres in a head frame with x to the subject's left (image right when the
face looks at the camera), y up and z out of the face towards the camera, centred on the mean of their vertices
(as SyncTalk centres BFM's mean shape), so a frontal face has rotation I in the camera convention of
``bench.datasets.preprocess``:

- ``mediapipe`` (the offline default): MediaPipe's canonical face geometry, the 468-vertex mesh whose vertex i is
  FaceLandmarker landmark i. It is read at run time from the ``geometry_pipeline_metadata_landmarks.binarypb``
  member of the ``mediapipe_face_landmarker`` asset (a zip), by hand from the protobuf wire format (no protobuf
  package is installed): top-level field 1 is the canonical ``Mesh3d`` (field 3 ``vertex_buffer``: unpacked
  float32, 5 per vertex = x, y, z in centimetres and u, v texture coordinates; field 4 ``index_buffer``: varint
  triangle indices), field 2 the Procrustes landmark basis (not needed here). It has no shape or expression
  basis; the tracker adds a regularised per-vertex shape correction instead.
- ``bfm``: the Basel Face Model 2009 subset that AD-NeRF/SyncTalk's face tracker uses, from the folder the user
  built with their ``convert_BFM.py`` (``data_utils/face_tracking/3DMM/`` there): ``3DMM_info.npy`` (a pickled
  dict saved with ``np.save``: ``mu_shape`` (3P,), ``b_shape`` (199, 3P), ``sig_shape`` (199,), ``mu_exp`` (3P,),
  ``b_exp`` (79, 3P), ``sig_exp`` (79,), plus texture entries not used here; P = 34650 vertices, coordinates in
  micrometres, which SyncTalk divides by 1000 to track in millimetres) and ``lands_info.txt`` (integers whose last
  68 are the vertex indices of the iBUG-68 landmarks). As SyncTalk does, only the 51 inner landmarks (iBUG 17-67)
  are fitted, the mean is ``mu_shape + mu_exp`` centred per axis, the identity basis is the first 100 rows of
  ``b_shape`` times ``sig_shape`` and the expression basis the 79 rows of ``b_exp`` times ``sig_exp``. BFM itself
  cannot be redistributed; the user registers at the University of Basel and runs ``convert_BFM.py``.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.contracts import BenchError

MEDIAPIPE_ASSET = "mediapipe_face_landmarker"
GEOMETRY_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"
MEDIAPIPE_VERTICES = 468
BFM_ID_DIMS = 100  # identity coefficients SyncTalk's tracker fits
BFM_EXP_DIMS = 79  # expression coefficients (all of exp_info's basis)
IBUG_INNER = np.arange(17, 68)  # the 51 landmarks SyncTalk fits: brows, nose, eyes, mouth (the jaw contour dropped)


@dataclass(frozen=True)
class FaceModel:
    """Model points and how they pair with a landmarks-step array.

    Model point j pairs with column ``landmark_columns[j]`` of the landmarks step's ``landmark_file``. A model
    may have a linear identity basis (shared by all frames) and an expression basis (one coefficient vector per
    frame), both in metres per unit coefficient, with the prior weights SyncTalk puts on their coefficients.
    """

    name: str
    points: np.ndarray  # (V, 3) metres
    landmark_file: str  # "mesh.npy" or "lms68.npy" in the landmarks step
    landmark_columns: np.ndarray  # (V,) int
    triangles: np.ndarray | None = None  # (T, 3) int into points, where the model has a mesh
    identity_basis: np.ndarray | None = None  # (V, 3, D_id) metres per coefficient
    expression_basis: np.ndarray | None = None  # (V, 3, D_exp) metres per coefficient
    identity_weight: float = 0.0  # prior weight on mean(identity coefficient²)
    expression_weight: float = 0.0  # prior weight on mean(expression coefficient²) per frame


def load(name: str, bfm_path: str | Path | None = None) -> FaceModel:
    """The face model the pose step's ``face_model`` option names."""
    if name == "mediapipe":
        return mediapipe_canonical()
    if name == "bfm":
        if not bfm_path:
            raise BenchError(
                "pose.face_model=bfm needs pose.bfm_path=<folder with 3DMM_info.npy and lands_info.txt> "
                "(built by AD-NeRF/SyncTalk's data_utils/face_tracking/convert_BFM.py from 01_MorphableModel.mat)"
            )
        return bfm(Path(bfm_path).expanduser())
    raise BenchError(f"pose.face_model={name!r} is unknown; use 'mediapipe' (default) or 'bfm' with pose.bfm_path")


def mediapipe_canonical() -> FaceModel:
    """MediaPipe's canonical face mesh (468 vertices = FaceLandmarker landmarks 0-467), in metres, centred."""
    from bench import assets

    with zipfile.ZipFile(assets.fetch(MEDIAPIPE_ASSET)) as bundle:
        metadata = bundle.read(GEOMETRY_MEMBER)
    vertices, triangles = parse_canonical_mesh(metadata)
    points = vertices[:, :3] / 100.0
    points -= points.mean(axis=0)
    return FaceModel(
        name="mediapipe_canonical",
        points=points,
        landmark_file="mesh.npy",
        landmark_columns=np.arange(MEDIAPIPE_VERTICES),
        triangles=triangles,
    )


def parse_canonical_mesh(metadata: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (468, 5) x, y, z [cm], u, v; triangles (T, 3)) from a GeometryPipelineMetadata message."""
    mesh_messages = [value for number, value in _wire_fields(metadata) if number == 1]
    if len(mesh_messages) != 1 or not isinstance(mesh_messages[0], bytes):
        raise BenchError(f"{GEOMETRY_MEMBER}: expected one canonical mesh message (field 1); the asset is damaged")
    floats: list[float] = []
    indices: list[int] = []
    for number, value in _wire_fields(mesh_messages[0]):
        if number == 3 and isinstance(value, float):
            floats.append(value)
        elif number == 4 and isinstance(value, int):
            indices.append(value)
    if len(floats) != 5 * MEDIAPIPE_VERTICES or len(indices) % 3:
        raise BenchError(
            f"{GEOMETRY_MEMBER}: {len(floats)} vertex floats and {len(indices)} indices, expected "
            f"{5 * MEDIAPIPE_VERTICES} and a multiple of 3; the asset is damaged"
        )
    return np.asarray(floats, dtype=np.float64).reshape(MEDIAPIPE_VERTICES, 5), np.asarray(indices).reshape(-1, 3)


def _wire_fields(message: bytes) -> list[tuple[int, int | float | bytes]]:
    """(field number, value) pairs of a protobuf message: varints as int, fixed32 as float32, fixed64 as float64,
    length-delimited as bytes."""
    fields: list[tuple[int, int | float | bytes]] = []
    position = 0
    while position < len(message):
        key, position = _varint(message, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(message, position)
        elif wire_type == 5:
            value = struct.unpack_from("<f", message, position)[0]
            position += 4
        elif wire_type == 1:
            value = struct.unpack_from("<d", message, position)[0]
            position += 8
        elif wire_type == 2:
            length, position = _varint(message, position)
            value = message[position : position + length]
            position += length
        else:
            raise BenchError(f"{GEOMETRY_MEMBER}: unsupported protobuf wire type {wire_type}; the asset is damaged")
        fields.append((number, value))
    if position != len(message):
        raise BenchError(f"{GEOMETRY_MEMBER}: truncated protobuf message; the asset is damaged")
    return fields


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data):
            raise BenchError(f"{GEOMETRY_MEMBER}: truncated protobuf varint; the asset is damaged")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, position


def bfm(folder: Path) -> FaceModel:
    """The BFM 2009 landmark model SyncTalk's tracker fits, from a converted ``3DMM`` folder (see module doc)."""
    info_path = folder / "3DMM_info.npy" if folder.is_dir() else folder
    lands_path = info_path.with_name("lands_info.txt")
    for path in (info_path, lands_path):
        if not path.is_file():
            raise BenchError(
                f"BFM model file {path} not found; pose.bfm_path must be the folder holding 3DMM_info.npy (made by "
                "AD-NeRF/SyncTalk's convert_BFM.py from 01_MorphableModel.mat) and lands_info.txt (in that repo's "
                "data_utils/face_tracking/3DMM/)"
            )
    try:
        info = np.load(info_path, allow_pickle=True).item()
        lands = np.loadtxt(lands_path, dtype=np.int64).reshape(-1)
    except (OSError, ValueError, AttributeError) as error:
        raise BenchError(f"{info_path} or {lands_path} cannot be read as SyncTalk's 3DMM files: {error}") from None
    missing = {"mu_shape", "b_shape", "sig_shape", "mu_exp", "b_exp", "sig_exp"} - set(info)
    if missing or len(lands) < 68:
        raise BenchError(
            f"{info_path}: missing entries {sorted(missing)} or {lands_path} has fewer than 68 indices; "
            "re-run convert_BFM.py"
        )
    mean = (np.asarray(info["mu_shape"], np.float64) + np.asarray(info["mu_exp"], np.float64)).reshape(-1, 3)
    mean -= mean.mean(axis=0)
    vertices = lands[-68:][IBUG_INNER]
    if vertices.max() >= len(mean):
        raise BenchError(f"{lands_path}: landmark vertex {vertices.max()} is outside the model's {len(mean)} vertices")
    micrometre = 1e-6

    def basis(rows: str, sigma: str, dims: int) -> np.ndarray:
        scaled = np.asarray(info[rows][:dims], np.float64) * np.asarray(info[sigma][:dims], np.float64)[:, None]
        return scaled.reshape(len(scaled), -1, 3)[:, vertices].transpose(1, 2, 0) * micrometre

    return FaceModel(
        name="bfm2009",
        points=mean[vertices] * micrometre,
        landmark_file="lms68.npy",
        landmark_columns=IBUG_INNER.copy(),
        identity_basis=basis("b_shape", "sig_shape", BFM_ID_DIMS),
        expression_basis=basis("b_exp", "sig_exp", BFM_EXP_DIMS),
        identity_weight=8.0,
        expression_weight=0.5,
    )
