"""The SyncTalk paper's reported numbers (CVPR 2024), as data for the reference rows of ``bench table``.

Transcribed from /work/shared/docs/paper_tables.md (itself from the paper). Tables 1 and 2 are averages over the
paper's subjects (videos from AD-NeRF, GeneFace and ER-NeRF; about 8,843 frames each; 25 fps); Table 4 is subject
May alone. These rows are never ranked against bench's measurements: the paper used its own subjects, audio and
metric code, so they are shown beside measured rows, clearly marked, for orientation only.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "SyncTalk (Peng et al., CVPR 2024)"

PSNR = "psnr@frame-mean"
LPIPS = "lpips@alex-v0.1"
MS_SSIM = "ms_ssim@rgb"
FID = "fid@pytorch-fid-pool3"
NIQE = "niqe@live"
BRISQUE = "brisque@live"
LMD = "lmd@fan-mouth20-centred-px"
AUE = "aue@openface-17au"
LSE_C = "lse_c@syncnet-v2-vshift15"
LSE_D = "lse_d@syncnet-v2-vshift15"

TABLE1_VARIANTS = (PSNR, LPIPS, MS_SSIM, FID, NIQE, BRISQUE, LMD, AUE, LSE_C)
"""Table 1's columns, in the paper's order, as the bench metric variants that compute them."""

TABLE4_VARIANTS = (PSNR, LPIPS, LMD)


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper table: a method (or ablation) and its values by metric variant."""

    label: str
    values: dict[str, float]


def _table1_row(label: str, *numbers: float) -> PaperRow:
    return PaperRow(label, dict(zip(TABLE1_VARIANTS, numbers, strict=True)))


TABLE1 = (
    _table1_row("Wav2Lip", 33.4385, 0.0697, 0.9781, 16.0228, 14.5367, 44.2659, 4.9630, 2.9029, 9.2387),
    _table1_row("VideoReTalking", 31.7923, 0.0488, 0.9680, 9.2063, 14.2410, 43.0465, 5.8575, 3.3308, 7.9683),
    _table1_row("DINet", 31.6475, 0.0443, 0.9640, 9.4300, 14.6850, 40.3650, 4.3725, 3.6875, 6.5653),
    _table1_row("TalkLip", 32.5154, 0.0782, 0.9697, 18.4997, 14.6385, 46.6717, 5.8605, 2.9579, 5.9472),
    _table1_row("IP-LAP", 35.1525, 0.0443, 0.9803, 8.2125, 14.6400, 42.0750, 3.3350, 2.8400, 4.9541),
    _table1_row("AD-NeRF", 26.7291, 0.1536, 0.9111, 28.9862, 14.9091, 55.4667, 2.9995, 5.5481, 4.4996),
    _table1_row("RAD-NeRF", 31.7754, 0.0778, 0.9452, 8.6570, 13.4433, 44.6892, 2.9115, 5.0958, 5.5219),
    _table1_row("GeneFace", 24.8165, 0.1178, 0.8753, 21.7084, 13.3353, 46.5061, 4.2859, 5.4527, 5.1950),
    _table1_row("ER-NeRF", 32.5216, 0.0334, 0.9501, 5.2936, 13.7048, 34.7361, 2.8137, 4.1873, 5.7749),
    _table1_row("SyncTalk (w/o Portrait)", 35.3542, 0.0235, 0.9769, 3.9247, 13.1333, 33.2954, 2.5714, 2.5796, 8.1331),
    _table1_row("SyncTalk (Portrait)", 37.4017, 0.0113, 0.9841, 2.7070, 14.2165, 37.3042, 2.5043, 3.2074, 8.0263),
)
"""Table 1: head reconstruction, test split, self-driven; averages over the paper's subjects."""

TABLE1_SETTINGS = (
    "the paper ranks these rows in one table, but they score different things: the GAN methods (Wav2Lip to IP-LAP) "
    "edit the mouth region of the original frame, the NeRF rows render the head over the GT torso, and "
    "SyncTalk (Portrait) pastes the face into the GT frame"
)

TABLE2_AUDIOS = ("A", "B")
"""The paper's two OOD audios; they were never released (SyncTalk#188), so no bench audio matches them."""


def _table2_row(label: str, a_lse_d: float, a_lse_c: float, b_lse_d: float, b_lse_c: float) -> PaperRow:
    return PaperRow(label, {f"A/{LSE_D}": a_lse_d, f"A/{LSE_C}": a_lse_c, f"B/{LSE_D}": b_lse_d, f"B/{LSE_C}": b_lse_c})


TABLE2 = (
    _table2_row("DINet", 8.5031, 5.6956, 8.2038, 5.1134),
    _table2_row("TalkLip", 8.7615, 5.7449, 8.7019, 5.5359),
    _table2_row("IP-LAP", 9.8037, 3.8578, 9.1102, 4.3890),
    _table2_row("GeneFace", 9.5451, 4.2933, 9.6675, 3.7342),
    _table2_row("ER-NeRF", 11.8130, 2.4076, 10.7338, 3.0242),
    _table2_row("SyncTalk", 7.7211, 6.6659, 8.0248, 6.2596),
)
"""Table 2: lip sync under the paper's two OOD audios; values keyed ``"<audio>/<variant>"``."""

TABLE4_SUBJECT = "May"

TABLE4 = tuple(
    PaperRow(label, dict(zip(TABLE4_VARIANTS, numbers, strict=True)))
    for label, *numbers in (
        ("full SyncTalk", 37.311, 0.0121, 2.8032),
        ("audio-visual encoder replaced by HuBERT", 33.516, 0.0276, 3.3961),
        ("facial animation capturer replaced by ER-NeRF's (AU45 blink)", 30.273, 0.0415, 3.0516),
        ("without facial-aware masked attention", 36.536, 0.0165, 2.9139),
        ("without head-sync stabilizer", 28.984, 0.0634, 3.5373),
        ("without portrait-sync generator", 32.239, 0.0395, 2.8154),
    )
)
"""Table 4: ablation on subject May."""

LABELS = {
    PSNR: "PSNR", LPIPS: "LPIPS", MS_SSIM: "MS-SSIM", FID: "FID", NIQE: "NIQE", BRISQUE: "BRISQUE", LMD: "LMD",
    AUE: "AUE", LSE_C: "LSE-C", LSE_D: "LSE-D",
}
"""The paper's column names for bench's variants."""

HIGHER_IS_BETTER = {
    PSNR: True, LPIPS: False, MS_SSIM: True, FID: False, NIQE: False, BRISQUE: False, LMD: False, AUE: False,
    LSE_C: True, LSE_D: False,
}
"""The paper's arrows: the direction of each column even where bench has no measurement yet."""
