"""FanslyMotion: photo-to-video over Stable Video Diffusion with exact camera motion."""

__version__ = "0.1.0"
