"""SyncTalk's registry entry (imports nothing heavy): paper, licence, capabilities, options, reported numbers."""

from bench.contracts import Capabilities, MethodSpec, Track

# The paper's reported values (../shared/docs/paper_tables.md). Table 1 and 2 average several subjects; Table 4
# is subject May. Keys are bench metric families.
_TABLE1_HEAD = {"psnr": 35.3542, "lpips": 0.0235, "ms_ssim": 0.9769, "fid": 3.9247, "niqe": 13.1333,
                "brisque": 33.2954, "lmd": 2.5714, "aue": 2.5796, "lse_c": 8.1331}
_TABLE1_PORTRAIT = {"psnr": 37.4017, "lpips": 0.0113, "ms_ssim": 0.9841, "fid": 2.7070, "niqe": 14.2165,
                    "brisque": 37.3042, "lmd": 2.5043, "aue": 3.2074, "lse_c": 8.0263}

SPECS = (
    MethodSpec(
        id="synctalk",
        impl="bench.methods.synctalk.adapter:SyncTalk",
        description="SyncTalk (CVPR 2024): tri-plane hash NeRF driven by an audio-visual encoder and 7 upper-face "
        "blendshapes, facial-aware masked attention, bundle-adjusted head poses, torso and Portrait-Sync Generator; "
        "plain PyTorch on CPU and GPU",
        capabilities=Capabilities(needs_training=True, ood_audio=True, tracks=(Track.HEAD, Track.PORTRAIT)),
        version="2",  # 2: trained on the frames with the plate as background (gt_imgs)
        default_config={
            "preset": "smoke",  # smoke | fast | paper (bench.methods.synctalk.presets)
            "audio_encoder": "auto",  # auto | ave | mel | hubert | deepspeech
            "expression": "blendshapes",  # blendshapes (7 upper-face coefficients) | au45 (ER-NeRF's blink)
            "masked_attention": "paper",  # paper (Eq. 4 masks) | code (released losses) | off
            "pose": "stabilised",  # stabilised (bundle-adjusted) | raw (per-frame tracker fit)
            "torso": False,  # train the 2-D torso field instead of compositing the GT torso
            "lpips_loss": "auto",  # auto: patch LPIPS in the fine stage when AlexNet weights are available
        },
        paper="SyncTalk: The Devil is in the Synchronization for Talking Head Synthesis (Peng et al.)",
        venue="CVPR 2024",
        license="original code CC BY-NC 4.0 (ZiqiaoPeng/SyncTalk); this re-implementation is bench's own",
        reference_values={
            "table1-head": _TABLE1_HEAD,
            "table1-portrait": _TABLE1_PORTRAIT,
            "table2-audio-A": {"lse_d": 7.7211, "lse_c": 6.6659},
            "table2-audio-B": {"lse_d": 8.0248, "lse_c": 6.2596},
            "table4-may-full": {"psnr": 37.311, "lpips": 0.0121, "lmd": 2.8032},
            "table4-may-hubert": {"psnr": 33.516, "lpips": 0.0276, "lmd": 3.3961},
            "table4-may-au45": {"psnr": 30.273, "lpips": 0.0415, "lmd": 3.0516},
            "table4-may-no-masked-attention": {"psnr": 36.536, "lpips": 0.0165, "lmd": 2.9139},
            "table4-may-no-stabilizer": {"psnr": 28.984, "lpips": 0.0634, "lmd": 3.5373},
            "table4-may-no-portrait": {"psnr": 32.239, "lpips": 0.0395, "lmd": 2.8154},
            "readme-may-head": {"psnr": 32.201, "lpips": 0.0394, "lmd": 2.822},
            "readme-may-portrait": {"psnr": 37.644, "lpips": 0.0117, "lmd": 2.825},
        },
    ),
)
