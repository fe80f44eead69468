"""SyncTalk (CVPR 2024) as a bench method."""
