"""Aiming the camera, in the engine: the subject found and kept in frame, keyframed paths,
the seed's drift, loops and the upscale warning."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image
from skimage import data

from fanslymotion import camera, motion, subject
from fanslymotion.errors import InvalidParams

from .imagetools import textured_photo
from .test_motion import path_errors

# scikit-image's astronaut, pasted small into a bigger, plainer photo, off-centre (upper
# right): where the face is, is known from where it was pasted.
PASTE = (1150, 250, 300)  # x, y, size in px of the pasted 512x512 photo
ASTRONAUT_FACE = (0.35, 0.14, 0.51, 0.31)  # the face in the astronaut photo, in fractions


def astronaut() -> np.ndarray:
    return np.asarray(data.astronaut())  # type: ignore[no-untyped-call]


def composite() -> Image.Image:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:900, 0:1600].astype(np.float32)
    field = np.stack([90 + 40 * np.sin(x / 160), 120 + 30 * np.cos(y / 140), 150 + 0 * x], -1)
    base = np.clip(field + rng.normal(0, 4, field.shape), 0, 255).astype(np.uint8)
    photo = Image.fromarray(base)
    px, py, size = PASTE
    photo.paste(Image.fromarray(astronaut()).resize((size, size)), (px, py))
    return photo


def true_face() -> tuple[float, float, float, float]:
    px, py, size = PASTE
    fx0, fy0, fx1, fy1 = ASTRONAUT_FACE
    return (px + fx0 * size, py + fy0 * size, px + fx1 * size, py + fy1 * size)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return composite()


def test_faces_come_first_then_saliency_then_the_centre(photo: Image.Image) -> None:
    found = subject.find_subject(photo)
    assert found.framing == "face"
    x0, y0, x1, y1 = true_face()
    assert x0 / 1600 < found.x < x1 / 1600 and y0 / 900 < found.y < y1 / 900
    # No face, one object on a plain ground: its centre.
    plain = Image.new("RGB", (400, 300), (40, 90, 40))
    plain.paste(Image.fromarray(astronaut()).resize((60, 60)).rotate(90), (60, 200))
    found = subject.find_subject(plain)
    assert found.framing == "saliency" and found.x < 0.4 and found.y > 0.6, found
    assert subject.find_subject(Image.new("RGB", (400, 300), (90, 90, 90))) == subject.CENTRE
    assert subject.find_subject(textured_photo(400, 300, seed=1)).framing != "face"


def test_a_photo_seen_again_is_answered_from_memory(photo: Image.Image) -> None:
    subject.forget_subjects()
    first = subject.find_subject(photo)
    assert subject.memo_stats() == (0, 1)
    # Another object with the same pixels, and a colour copy whose grey is the same (an RGB
    # pixel of three equal values is that value in grey): the same answer, from memory.
    again = subject.find_subject(photo.copy())
    recoloured = subject.find_subject(photo.convert("L").convert("RGB"))
    assert again == recoloured == first and subject.memo_stats() == (2, 1)
    # One pixel changed is another photo: looked at anew, and still the same face.
    edited = photo.copy()
    edited.putpixel((5, 5), (255, 0, 0))
    assert subject.find_subject(edited).framing == "face"
    assert subject.memo_stats() == (2, 2)
    # Only the last MEMO_SIZE photos are kept: the first one falls out (tiny photos are quick).
    for seed in range(subject.MEMO_SIZE - 1):
        subject.find_subject(textured_photo(40, 30, seed=seed))
    subject.find_subject(edited)
    assert subject.memo_stats() == (3, 2 + subject.MEMO_SIZE - 1)
    assert subject.find_subject(photo) == first
    assert subject.memo_stats() == (3, 2 + subject.MEMO_SIZE)


class BrokenCascade:
    """A face detector that fails, as scikit-image's would on a scan it cannot do."""

    def detect_multi_scale(self, **_: object) -> list[dict[str, int]]:
        raise MemoryError("no room to scan")


def test_a_failed_face_detector_aims_by_saliency_and_is_not_remembered(
    photo: Image.Image, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    subject.forget_subjects()
    monkeypatch.setattr(subject._local, "cascade", BrokenCascade(), raising=False)
    found = subject.find_subject(photo)
    assert found.framing in ("saliency", "centre") and found.faces == ()
    assert "face detection failed: MemoryError: no room to scan" in caplog.text
    monkeypatch.undo()  # the detector works again: the next look finds the face
    assert subject.find_subject(photo).framing == "face"
    assert subject.memo_stats() == (0, 2)


@pytest.mark.parametrize("preset", motion.PRESETS)
def test_the_face_stays_inside_every_window_of_a_vertical_clip(
    photo: Image.Image, preset: str
) -> None:
    found = subject.find_subject(photo)
    shot = camera.aim(camera.Shot(), found)
    out = motion.output_size("360p", "9:16", *photo.size)
    fx0, fy0, fx1, fy1 = true_face()
    # The default strength; at 1.0 a tilt travels 30 % of the window, more than a face near the
    # photo's top edge leaves room for (the path ends on it, and starts below it).
    for seed, strength in itertools.product((None, 7, 8), (0.3, 0.5)):
        path = camera.plan(preset, strength, photo.size, out, shot=shot, seed=seed)
        for x0, y0, x1, y1 in path.boxes(49):
            assert x0 <= fx0 and fx1 <= x1 and y0 <= fy0 and fy1 <= y1, (preset, seed, strength)
            assert x0 >= 0 and y0 >= 0 and x1 <= 1600 + 1e-6 and y1 <= 900 + 1e-6
    # A centred path (no subject) loses it: what the aim is for.
    plain = motion.CameraPath(preset, 0.5, photo.size, out)
    x0, _, x1, _ = plain.box(1.0)
    assert not x0 <= fx0 <= fx1 <= x1


def test_pans_end_on_the_subject_and_pushes_lean_toward_it() -> None:
    size, out = (3000, 1000), (360, 640)
    for preset in ("pan_l", "pan_r", "tilt_up", "dolly_in", "micro"):
        path = motion.CameraPath(preset, 0.5, size, out, subject=(0.8, 0.5))
        x0, _, x1, _ = path.box(1.0)
        assert (x0 + x1) / 2 == pytest.approx(0.8 * 3000, abs=1.0), preset
    # Near the edge the photo decides: the window stops at the edge, never beyond.
    path = motion.CameraPath("dolly_in", 0.5, size, out, subject=(0.99, 0.5))
    boxes = list(path.boxes(30))
    assert max(b[2] for b in boxes) <= 3000 and boxes[-1][2] == pytest.approx(3000)


def test_focus_and_camera_name_the_framing() -> None:
    shot = camera.make_shot(focus={"x": 0.2, "y": 0.7})
    aimed = camera.aim(shot, subject.Subject("face", 0.9, 0.1))
    assert aimed.framing == "focus" and (aimed.subject.x, aimed.subject.y) == (0.2, 0.7)  # type: ignore[union-attr]
    keyed = camera.make_shot(
        camera={"keyframes": [{"t": 0, "x": 0.5, "y": 0.5}, {"t": 1, "x": 0.6, "y": 0.5}]}
    )
    assert camera.aim(keyed, None).framing == "camera"
    assert camera.aim(camera.Shot(), None).framing == "centre"
    again = camera.Shot.from_json(aimed.to_json())
    assert again == aimed and camera.Shot.from_json(None) == camera.Shot()


def test_keyframes_are_followed_exactly() -> None:
    size, out = (2000, 1000), (640, 360)
    keys = (
        camera.Keyframe(0.0, 0.4, 0.5, 1.5),
        camera.Keyframe(0.5, 0.5, 0.45, 2.0),
        camera.Keyframe(1.0, 0.7, 0.6, 1.5),
    )
    fit_w = min(2000, 1000 * 16 / 9)
    for ease in camera.EASES:
        path = camera.KeyframePath(keys, ease, size, out)
        for k in keys:
            x0, y0, x1, y1 = path.box(k.t)
            assert (x0 + x1) / 2 == pytest.approx(k.x * 2000)
            assert (y0 + y1) / 2 == pytest.approx(k.y * 1000)
            assert x1 - x0 == pytest.approx(fit_w / k.zoom)
        for x0, y0, x1, y1 in path.boxes(101):
            assert x0 >= 0 and y0 >= 0 and x1 <= 2000 and y1 <= 1000
            assert (x1 - x0) / (y1 - y0) == pytest.approx(16 / 9)
    smooth = camera.KeyframePath(keys, "smooth", size, out)
    linear = camera.KeyframePath(keys, "linear", size, out)
    # Smooth starts at rest; linear at full speed.
    assert smooth.box(0.01)[0] - smooth.box(0.0)[0] < 0.1 * (linear.box(0.01)[0] - linear.box(0)[0])


@pytest.mark.parametrize(
    ("keyframes", "words"),
    [
        ([{"t": 0, "x": 0.5, "y": 0.5}], "2 to 8"),
        ([{"t": 0, "x": 0.5, "y": 0.5}] * 9, "2 to 8"),
        ([{"t": 0.5, "x": 0.5, "y": 0.5}, {"t": 0.5, "x": 0.5, "y": 0.5}], "keyframes[1].t"),
        ([{"t": 0, "x": 0.5, "y": 0.5, "zoom": 0.5}, {"t": 1, "x": 0.5, "y": 0.5}], ".zoom"),
        ([{"t": 0, "x": 1.5, "y": 0.5}, {"t": 1, "x": 0.5, "y": 0.5}], "keyframes[0].x"),
        ([{"t": 0, "x": 0.5, "y": 0.5, "r": 1}, {"t": 1, "x": 0.5, "y": 0.5}], "keyframes[0]"),
    ],
)
def test_bad_keyframes_are_named(keyframes: list[dict[str, float]], words: str) -> None:
    with pytest.raises(InvalidParams, match=words.replace("[", r"\[").replace("]", r"\]")):
        camera.make_shot(camera={"keyframes": keyframes})


def test_a_window_leaving_the_photo_says_which_keyframe_and_by_how_much() -> None:
    # 2000x1000 photo, 16:9 output: the fit window is 1777.8 px wide; at zoom 2, 888.9 px; a
    # centre at x = 0.1 (200 px) leaves the photo by 244.4 px on the left, 0.1222 of its width.
    shot = camera.make_shot(
        camera={
            "keyframes": [{"t": 0, "x": 0.5, "y": 0.5}, {"t": 1, "x": 0.1, "y": 0.5, "zoom": 2}]
        }
    )
    with pytest.raises(InvalidParams) as info:
        camera.check_keyframes(shot.keyframes, (2000, 1000), (640, 360))
    message = info.value.message
    assert "keyframes[1]" in message and "left" in message and "0.1222" in message, message
    assert "move it right" in message


def test_the_seed_varies_the_path_and_repeats_it() -> None:
    size, out = (1600, 1000), (320, 180)
    base = motion.CameraPath("pan_l", 0.5, size, out)
    one = [motion.CameraPath("pan_l", 0.5, size, out, seed=1).box(t) for t in (0.25, 0.5, 0.75)]
    same = [motion.CameraPath("pan_l", 0.5, size, out, seed=1).box(t) for t in (0.25, 0.5, 0.75)]
    two = [motion.CameraPath("pan_l", 0.5, size, out, seed=2).box(t) for t in (0.25, 0.5, 0.75)]
    assert one == same
    # Visibly different: tens of output pixels apart somewhere in the clip.
    scale = out[0] / (one[0][2] - one[0][0])
    apart = max(abs(a[0] - b[0]) * scale for a, b in zip(one, two, strict=True))
    assert apart > 3.0, apart
    assert one != [base.box(t) for t in (0.25, 0.5, 0.75)]
    for seed in range(20):
        path = motion.CameraPath("micro", 1.0, size, out, seed=seed)
        boxes = np.array(list(path.boxes(60)))
        assert boxes[:, :2].min() >= 0 and boxes[:, 2].max() <= 1600 and boxes[:, 3].max() <= 1000
    still = motion.CameraPath("pan_l", 0.0, size, out, seed=5)
    assert still.box(0.0) == still.box(0.6)  # strength 0 is still a still frame


def test_drifting_frames_stay_sub_pixel_exact() -> None:
    photo = textured_photo(1200, 800, seed=1, scale=1.5)
    out = (320, 180)
    path = motion.CameraPath("micro", 0.5, photo.size, out, seed=11, subject=(0.3, 0.6))
    frames = list(motion.render_path(photo, path, 16))
    assert max(path_errors(frames, path, out)) <= 0.01


@pytest.mark.parametrize("preset", motion.PRESETS)
def test_a_loop_comes_back_with_matching_velocity(preset: str) -> None:
    path = motion.CameraPath(preset, 1.0, (1600, 1000), (320, 180), loop=True, seed=3)
    assert path.box(0.0) == pytest.approx(path.box(1.0), abs=1e-9)
    eps = 1e-5  # velocities in px per clip: the same leaving the start as arriving at the end
    start = np.subtract(path.box(eps), path.box(0.0)) / eps
    end = np.subtract(path.box(1.0), path.box(1.0 - eps)) / eps
    assert start == pytest.approx(end, abs=0.5)
    # It does go somewhere in between.
    assert not np.allclose(path.box(0.5), path.box(0.0), atol=1.0)
    keyed = camera.KeyframePath(
        (camera.Keyframe(0, 0.4, 0.5, 1.5), camera.Keyframe(1, 0.6, 0.5, 1.5)),
        "linear",
        (1600, 1000),
        (320, 180),
        loop=True,
    )
    assert keyed.box(0.0) == keyed.box(1.0) and keyed.box(0.5) != keyed.box(0.0)


def test_upscale_warning_gives_the_factor_and_the_largest_honest_resolution() -> None:
    # A 451x300 photo at 720p 16:9: the fit window is 451 px wide for 1280 px out.
    out = motion.output_size("720p", "16:9", 451, 300)
    path = motion.CameraPath("pan_l", 0.0, (451, 300), out)
    warning = camera.upscale_warning(path, "720p")
    assert warning is not None and warning["code"] == "upscale"
    assert warning["factor"] == pytest.approx(1280 / 451, abs=0.01)
    assert warning["max_resolution"] is None  # 360p is 640 wide: still enlarged
    big = motion.CameraPath(
        "dolly_in", 0.5, (1500, 1000), motion.output_size("1080p", "16:9", 1500, 1000)
    )
    warning = camera.upscale_warning(big, "1080p")
    assert warning is not None and warning["max_resolution"] == "480p", warning
    small = motion.CameraPath("micro", 0.5, (3000, 2000), (1280, 720))
    assert camera.upscale_warning(small, "720p") is None


def test_the_working_crop_follows_the_subject() -> None:
    centred = camera.working_crop((2000, 1000), (1024, 1024), None)
    assert centred == pytest.approx((500.0, 0.0, 1500.0, 1000.0))
    right = camera.working_crop((2000, 1000), (1024, 1024), subject.Subject("face", 0.8, 0.3))
    assert right == pytest.approx((1000.0, 0.0, 2000.0, 1000.0))  # against the right edge
    inner = camera.working_crop((2000, 1000), (1024, 1024), subject.Subject("face", 0.6, 0.3))
    assert inner == pytest.approx((700.0, 0.0, 1700.0, 1000.0))


def rolled_errors(
    frames: list[np.ndarray], path: motion.CameraPath, out: tuple[int, int]
) -> list[float]:
    """`path_errors` for a rolling window: the ideal motion of each patch maps its point to the
    photo through the rotated window of one frame and back through the next one's."""
    from .imagetools import patch_motion
    from .test_motion import CENTRES, PATCH

    n = len(frames)

    def window(t: float) -> tuple[float, float, float, float, float]:
        x0, y0, x1, y1 = path.box(t)
        return (
            (x0 + x1) / 2,
            (y0 + y1) / 2,
            (x1 - x0) / out[0],
            np.cos(path.roll(t)),
            np.sin(path.roll(t)),
        )

    errors = []
    for i in range(1, n):
        mx, my, s, c, sn = window((i - 1) / (n - 1))
        nx, ny, s2, c2, sn2 = window(i / (n - 1))
        for dx, dy, px, py in patch_motion(frames[i - 1], frames[i], CENTRES, PATCH):
            du, dv = px - out[0] / 2, py - out[1] / 2
            sx, sy = mx + s * (du * c - dv * sn), my + s * (du * sn + dv * c)
            ex, ey = (sx - nx) / s2, (sy - ny) / s2
            qx, qy = out[0] / 2 + ex * c2 + ey * sn2, out[1] / 2 - ex * sn2 + ey * c2
            errors.append(float(np.hypot(dx - (qx - px), dy - (qy - py))))
    return errors


def test_the_seed_rolls_the_window_smoothly_inside_the_photo() -> None:
    photo = textured_photo(1200, 800, seed=1, scale=1.5)
    out = (320, 180)
    path = motion.CameraPath("micro", 0.5, photo.size, out, seed=11, roll=True)
    rolls = [path.roll(t) for t in np.linspace(0, 1, 200)]
    # A slight roll, half of DRIFT_ROLL's degree at strength 0.5, different for another seed.
    assert 0.2 < np.degrees(max(np.abs(rolls))) <= 0.5
    other = motion.CameraPath("micro", 0.5, photo.size, out, seed=12, roll=True)
    assert (
        max(abs(a - other.roll(t)) for a, t in zip(rolls, np.linspace(0, 1, 200), strict=True))
        > 0.002
    )
    assert motion.CameraPath("micro", 0.5, photo.size, out, seed=11).roll(0.3) == 0.0
    # Every rolled window's corners are inside the photo.
    for t in np.linspace(0, 1, 101):
        x0, y0, x1, y1 = path.box(t)
        a = path.roll(t)
        hw, hh = (x1 - x0) / 2, (y1 - y0) / 2
        for u, v in ((-hw, -hh), (hw, -hh), (-hw, hh), (hw, hh)):
            cx = (x0 + x1) / 2 + u * np.cos(a) - v * np.sin(a)
            cy = (y0 + y1) / 2 + u * np.sin(a) + v * np.cos(a)
            assert -1e-6 <= cx <= 1200 + 1e-6 and -1e-6 <= cy <= 800 + 1e-6
    frames = list(motion.render_path(photo, path, 16))
    again = list(motion.render_path(photo, path, 16))
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))
    upright = list(
        motion.render_path(photo, motion.CameraPath("micro", 0.5, photo.size, out, seed=11), 16)
    )
    # The frames follow the rolled window to a few hundredths of a pixel, and the upright
    # model does not describe them.
    errors = rolled_errors(frames, path, out)
    assert max(errors) <= 0.02, max(errors)
    assert max(path_errors(frames, path, out)) > 0.1
    assert np.abs(frames[8].astype(int) - upright[8]).mean() > 2
