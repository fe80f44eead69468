"""Built-in subjects and OOD driving audio (plain data; videos and wavs are assets named by URL and sha256)."""

from bench.contracts import AudioSpec, SubjectSpec

_HDTF = "HDTF clip from the SadTalker examples: 8 s, 512x512, 25 fps (200 frames: 181 train, 19 test)"
_PAPER = "SyncTalk paper subject, footage not redistributable (put it at $BENCH_HOME/videos/<id>.mp4): "

SUBJECTS = (
    SubjectSpec(
        id="cnn",
        description="CNN anchor from sstzal/DFRF: 71 s, 512x512, 25 fps, 1779 frames (1617 train, 162 test)",
        video_asset="cnn2_25fps",
        license="repo MIT; news footage (third party)",
    ),
    SubjectSpec(id="hdtf_WDA_KatieHill_000", description=_HDTF, video_asset="hdtf_WDA_KatieHill_000"),
    SubjectSpec(
        id="hdtf_WDA_AlexandriaOcasioCortez_000",
        description=_HDTF,
        video_asset="hdtf_WDA_AlexandriaOcasioCortez_000",
    ),
    SubjectSpec(id="hdtf_RD_Radio34_000", description=_HDTF, video_asset="hdtf_RD_Radio34_000"),
    SubjectSpec(id="hdtf_RD_Radio2_000", description=_HDTF, video_asset="hdtf_RD_Radio2_000"),
    SubjectSpec(
        id="May",
        description=_PAPER + "SyncTalk/GeneFace's May.",
        source="SyncTalk README: Google Drive May.zip (data/May/May.mp4); originally collected by GeneFace",
    ),
    SubjectSpec(
        id="Obama",
        description=_PAPER + "AD-NeRF's Obama.",
        source="AD-NeRF repository (dataset/vids/Obama.mp4); 450x450 in the paper",
    ),
    SubjectSpec(
        id="Macron",
        description=_PAPER + "ER-NeRF's Macron.",
        source="ER-NeRF/GeneFace video lists (YouTube source, cut to a 512x512 25 fps face crop)",
    ),
    SubjectSpec(
        id="Lieu",
        description=_PAPER + "ER-NeRF's Lieu.",
        source="ER-NeRF video lists (YouTube source, cut to a 512x512 25 fps face crop)",
    ),
    SubjectSpec(
        id="Shaheen",
        description=_PAPER + "ER-NeRF's Shaheen.",
        source="ER-NeRF video lists (YouTube source, cut to a 512x512 25 fps face crop)",
    ),
)

AUDIO = (
    AudioSpec(id="zozo", asset="zozo", language="en", description="GeneFace validation speech, 10.9 s, 16 kHz stereo"),
    AudioSpec(
        id="MacronSpeech", asset="MacronSpeech", language="fr", description="GeneFace++ speech, 11.9 s, 48 kHz stereo"
    ),
    AudioSpec(id="eng", asset="eng", language="en", description="MuseTalk speech, 60 s, 16 kHz mono"),
    AudioSpec(
        id="synctalk_test",
        asset="synctalk_test",
        language="en",
        description="SyncTalk's demo driving audio (drove its May demo render), 13.3 s, 16 kHz mono",
    ),
    AudioSpec(
        id="hdtf_RD_Radio31_000",
        asset="hdtf_RD_Radio31_000",
        language="en",
        description="HDTF speech from the SadTalker examples, 8 s, 16 kHz stereo",
    ),
)
