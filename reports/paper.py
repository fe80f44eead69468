"""The reference rows of ``bench table``: the numbers methods' papers report, read from the method specs (their
one home, ``MethodSpec.paper_results``), with the columns and labels of the SyncTalk paper's tables.

Tables 1 and 2 are averages over the paper's subjects (videos from AD-NeRF, GeneFace and ER-NeRF; about 8,843 frames
each; 25 fps); Table 4 is subject May alone. These rows are never ranked against bench's measurements: the paper used its own subjects, audio and
metric code, so they are shown beside measured rows, clearly marked, for orientation only.
"""

from __future__ import annotations

from bench.contracts import PaperResult

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


TABLE1_SETTINGS = (
    "the paper ranks these rows in one table, but they score different things: the GAN methods (Wav2Lip to IP-LAP) "
    "edit the mouth region of the original frame, the NeRF rows render the head over the GT torso, and "
    "SyncTalk (Portrait) pastes the face into the GT frame"
)

TABLE2_AUDIOS = ("A", "B")
"""The paper's two OOD audios; they were never released (SyncTalk#188), so no bench audio matches them."""

TABLE4_SUBJECT = "May"


def rows(table: str) -> tuple[PaperResult, ...]:
    """The reported rows of ``table`` ("table1", "table2", "table4") from every registered method's spec, which is
    their one home; Table 1 and 2 average the paper's subjects, Table 4 is subject May."""
    from bench import registry

    return tuple(result for spec in registry.methods.all().values() for result in spec.paper_results if result.table == table)


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
