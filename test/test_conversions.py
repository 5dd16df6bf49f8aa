"""Tests of posesdf_ros.ros.conversions.

Messages that the reader must understand are built by hand with ``struct``
(independently of the numpy dtypes the module uses), with random padding,
both byte orders and garbage in the padding bytes.
"""
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header

from posesdf_ros.ros.conversions import (
    array_to_image,
    cloud_dtype,
    cloud_to_array,
    cloud_to_rgb,
    cloud_to_xyz,
    depth_image_to_metres,
    image_to_array,
    image_to_rgb,
    xyz_to_cloud,
)

SETTINGS = settings(max_examples=60, deadline=None)

# PointField datatype -> (struct code, numpy dtype)
DATATYPES = {
    PointField.INT8: ("b", np.int8),
    PointField.UINT8: ("B", np.uint8),
    PointField.INT16: ("h", np.int16),
    PointField.UINT16: ("H", np.uint16),
    PointField.INT32: ("i", np.int32),
    PointField.UINT32: ("I", np.uint32),
    PointField.FLOAT32: ("f", np.float32),
    PointField.FLOAT64: ("d", np.float64),
}
# encoding -> (struct code, numpy dtype, channels)
ENCODINGS = {
    "rgb8": ("B", np.uint8, 3),
    "bgr8": ("B", np.uint8, 3),
    "rgba8": ("B", np.uint8, 4),
    "bgra8": ("B", np.uint8, 4),
    "mono8": ("B", np.uint8, 1),
    "mono16": ("H", np.uint16, 1),
    "16UC1": ("H", np.uint16, 1),
    "32FC1": ("f", np.float32, 1),
}
RGB_INDICES = {"rgb8": [0, 1, 2], "bgr8": [2, 1, 0], "rgba8": [0, 1, 2], "bgra8": [2, 1, 0]}


def header(frame="camera"):
    return Header(frame_id=frame)


def random_values(rng, dtype, shape):
    """Values of ``dtype`` over its whole range; floats include NaN and infinities."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        values = rng.normal(0.0, 5.0, shape).astype(dtype)
        special = rng.random(shape)
        values[special < 0.15] = np.nan
        values[(special >= 0.15) & (special < 0.2)] = np.inf
        values[(special >= 0.2) & (special < 0.25)] = -np.inf
        return values
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def xyz_arrays(organised):
    shapes = hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=6) if organised \
        else st.integers(0, 30).map(lambda n: (n,))
    elements = st.floats(width=32, allow_nan=True, allow_infinity=True)
    return shapes.flatmap(lambda shape: hnp.arrays(np.float32, shape + (3,), elements=elements))


# --------------------------------------------------------------------------- clouds we write


@SETTINGS
@given(organised=st.booleans(), data=st.data())
def test_xyz_cloud_round_trip(organised, data):
    points = data.draw(xyz_arrays(organised))
    with_rgb = data.draw(st.booleans())
    rgb = data.draw(hnp.arrays(np.uint8, points.shape)) if with_rgb else None

    cloud = xyz_to_cloud(points, header(), rgb)

    height, width = points.shape[:2] if organised else (1, points.shape[0])
    assert (cloud.height, cloud.width) == (height, width)
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == \
        [("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1)] + \
        ([("rgb", 12, PointField.FLOAT32, 1)] if with_rgb else [])
    assert cloud.point_step == (16 if with_rgb else 12)
    assert cloud.row_step == cloud.point_step * width
    assert len(cloud.data) == cloud.row_step * height
    assert cloud.is_bigendian is False
    assert cloud.header.frame_id == "camera"
    finite = np.isfinite(points).all(axis=-1)
    assert cloud.is_dense == bool(finite.all())

    organised_xyz = cloud_to_xyz(cloud, keep_organised=True)
    assert organised_xyz.dtype == np.float32 and organised_xyz.shape == (height, width, 3)
    np.testing.assert_array_equal(organised_xyz, points.reshape(height, width, 3))
    np.testing.assert_array_equal(cloud_to_xyz(cloud), points[finite].reshape(-1, 3))

    if with_rgb:
        np.testing.assert_array_equal(cloud_to_rgb(cloud), rgb.reshape(height, width, 3))
        raw = bytes(cloud.data)
        for i, (r, g, b) in enumerate(rgb.reshape(-1, 3)):
            # PCL convention: the packed field's bits read as 0x00RRGGBB.
            assert struct.unpack_from("<I", raw, 16 * i + 12)[0] == (int(r) << 16) | (int(g) << 8) | int(b)
    else:
        assert cloud_to_rgb(cloud) is None


def test_xyz_to_cloud_accepts_float64_and_integer_points():
    cloud = xyz_to_cloud(np.array([[1.5, -2.0, 3.25], [1e300, 0.0, 0.0]]), header())
    assert not cloud.is_dense  # 1e300 does not fit in float32: it becomes inf
    np.testing.assert_array_equal(cloud_to_xyz(cloud), [[1.5, -2.0, 3.25]])
    np.testing.assert_array_equal(cloud_to_xyz(xyz_to_cloud(np.arange(6).reshape(2, 3), header())),
                                  [[0, 1, 2], [3, 4, 5]])


# --------------------------------------------------------------------------- clouds built by hand


def _layout(draw):
    """Random fields (x, y, z as f4/f8, optional intensity, ring and packed colour) with gaps."""
    fields = [(name, draw(st.sampled_from([PointField.FLOAT32, PointField.FLOAT64])), 1) for name in "xyz"]
    if draw(st.booleans()):
        fields.append(("intensity", draw(st.sampled_from(sorted(DATATYPES))), draw(st.integers(1, 3))))
    if draw(st.booleans()):
        fields.append(("ring", draw(st.sampled_from(sorted(DATATYPES))), 1))
    if draw(st.booleans()):
        fields.append((draw(st.sampled_from(["rgb", "rgba"])),
                       draw(st.sampled_from([PointField.FLOAT32, PointField.UINT32])), 1))
    order = draw(st.permutations(range(len(fields))))
    placed, offset = [], 0
    for i in order:
        name, datatype, count = fields[i]
        offset += draw(st.integers(0, 3))  # unaligned gaps are legal
        placed.append((name, datatype, count, offset))
        offset += np.dtype(DATATYPES[datatype][1]).itemsize * count
    return placed, offset + draw(st.integers(0, 5))


@st.composite
def hand_built_clouds(draw):
    """(cloud, expected values per field) built with struct, any byte order and padding."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    fields, point_step = _layout(draw)
    height, width = draw(st.integers(0, 4)), draw(st.integers(0, 5))
    row_step = width * point_step + draw(st.integers(0, 7))
    big = draw(st.booleans())
    order = ">" if big else "<"

    data = bytearray(rng.integers(0, 256, height * row_step, dtype=np.uint8).tobytes())  # garbage padding
    expected = {}
    for name, datatype, count, offset in fields:
        code, dtype = DATATYPES[datatype]
        if name in ("rgb", "rgba"):
            # Packed colour: write the bits 0xAARRGGBB whatever the declared type.
            values = rng.integers(0, 2**32, (height, width), dtype=np.uint32)
            code = "I"
        else:
            values = random_values(rng, dtype, (height, width, count) if count > 1 else (height, width))
        expected[name] = values
        for row in range(height):
            for col in range(width):
                struct.pack_into(f"{order}{count}{code}", data, row * row_step + col * point_step + offset,
                                 *np.atleast_1d(values[row, col]).tolist())
    cloud = PointCloud2(
        header=header(), height=height, width=width, is_bigendian=big, point_step=point_step, row_step=row_step,
        fields=[PointField(name=name, offset=offset, datatype=datatype, count=count)
                for name, datatype, count, offset in fields])
    cloud.data = bytes(data)
    return cloud, expected


@SETTINGS
@given(hand_built_clouds())
def test_hand_built_cloud_is_read_correctly(case):
    cloud, expected = case
    dtype = cloud_dtype(cloud)
    assert dtype.itemsize == cloud.point_step
    assert {name: dtype.fields[name][1] for name in dtype.names} == {f.name: f.offset for f in cloud.fields}

    points = cloud_to_array(cloud)
    assert points.shape == (cloud.height, cloud.width)
    for name, values in expected.items():
        if name in ("rgb", "rgba"):
            continue
        assert np.array_equal(points[name], values, equal_nan=points[name].dtype.kind == "f"), name

    xyz = cloud_to_xyz(cloud, keep_organised=True)
    stacked = np.stack([expected[n] for n in "xyz"], axis=-1)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(xyz, stacked.astype(np.float32))
    finite = np.isfinite(xyz).all(axis=-1)
    np.testing.assert_array_equal(cloud_to_xyz(cloud), xyz[finite])

    colour = next((expected[n] for n in ("rgb", "rgba") if n in expected), None)
    rgb = cloud_to_rgb(cloud)
    if colour is None:
        assert rgb is None
    else:
        assert rgb.dtype == np.uint8 and rgb.shape == (cloud.height, cloud.width, 3)
        np.testing.assert_array_equal(rgb, np.stack([(colour >> s) & 0xFF for s in (16, 8, 0)], axis=-1))


def test_cloud_to_array_is_a_read_only_view():
    cloud = xyz_to_cloud(np.ones((2, 3), np.float32), header())
    points = cloud_to_array(cloud)
    with pytest.raises(ValueError):
        points["x"][0, 0] = 5.0
    assert cloud_to_xyz(cloud)[0, 0] == 1.0


def test_organised_640x360_cloud_round_trip():
    rng = np.random.default_rng(7)
    points = rng.uniform(-4.0, 4.0, (360, 640, 3)).astype(np.float32)
    points[rng.random((360, 640)) < 0.3] = np.nan
    rgb = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)

    cloud = xyz_to_cloud(points, header(), rgb)
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (360, 640, 16, 640 * 16)
    assert len(cloud.data) == 360 * 640 * 16 and not cloud.is_dense
    np.testing.assert_array_equal(cloud_to_xyz(cloud, keep_organised=True), points)
    finite = ~np.isnan(points[..., 0])
    np.testing.assert_array_equal(cloud_to_xyz(cloud), points[finite])
    np.testing.assert_array_equal(cloud_to_rgb(cloud), rgb)


# --------------------------------------------------------------------------- cloud errors


def _cloud(fields, point_step=12, width=2, height=1, row_step=None, data=None):
    row_step = width * point_step if row_step is None else row_step
    cloud = PointCloud2(height=height, width=width, point_step=point_step, row_step=row_step,
                        fields=[PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields])
    cloud.data = bytes(height * row_step) if data is None else data
    return cloud


XYZ = [("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1)]


@pytest.mark.parametrize("cloud, message", [
    (_cloud(XYZ[:2]), "no z"),
    (_cloud([("intensity", 0, PointField.FLOAT32, 1)], point_step=4), "no x, y, z"),
    (_cloud(XYZ, data=bytes(23)), "23 bytes"),
    (_cloud(XYZ, data=bytes(25)), "25 bytes"),
    (_cloud(XYZ, row_step=20), "row_step 20 is smaller"),
    (_cloud(XYZ, point_step=0, row_step=0), "point_step 0"),
    (_cloud(XYZ, point_step=10), "beyond point_step 10"),
    (_cloud(XYZ + [("rgb", 12, PointField.FLOAT32, 1)]), "beyond point_step 12"),
    (_cloud(XYZ[:2] + [("z", 8, 9, 1)]), "unknown datatype 9"),
    (_cloud(XYZ + [("x", 0, PointField.FLOAT32, 1)]), "two fields named 'x'"),
    (_cloud(XYZ[:2] + [("z", 8, PointField.INT16, 1)]), "'z' is INT16"),
    (_cloud(XYZ[:2] + [("z", 8, PointField.FLOAT32, 2)], point_step=16), "'z' is FLOAT32 x 2"),
    # Some drivers put the number of points in count.
    (_cloud(XYZ[:2] + [("z", 8, PointField.FLOAT32, 2)]), "beyond point_step 12"),
    (_cloud(XYZ, point_step=2**31, width=1, data=b""), "too large"),
])
def test_cloud_to_xyz_rejects_malformed_clouds(cloud, message):
    with pytest.raises(ValueError, match=message):
        cloud_to_xyz(cloud)


def test_cloud_to_rgb_rejects_a_colour_field_of_the_wrong_type():
    cloud = _cloud(XYZ + [("rgb", 12, PointField.UINT8, 3)], point_step=15)
    with pytest.raises(ValueError, match="'rgb' is UINT8 x 3"):
        cloud_to_rgb(cloud)


@pytest.mark.parametrize("points, rgb, message", [
    (np.zeros((4, 2)), None, "points must be"),
    (np.zeros((2, 2, 2, 3)), None, "points must be"),
    (np.zeros((4, 3), complex), None, "points must be"),
    (np.array([["a", "b", "c"]]), None, "points must be"),
    (np.zeros((4, 3)), np.zeros((4, 3), np.int64), "rgb must be uint8"),
    (np.zeros((4, 3)), np.zeros((3, 3), np.uint8), "rgb must be uint8 of shape"),
])
def test_xyz_to_cloud_rejects_bad_arguments(points, rgb, message):
    with pytest.raises(ValueError, match=message):
        xyz_to_cloud(points, header(), rgb)


def test_xyz_to_cloud_rejects_a_missing_header():
    with pytest.raises(ValueError, match="std_msgs/Header"):
        xyz_to_cloud(np.zeros((1, 3)), None)


@st.composite
def garbage_clouds(draw):
    small = st.integers(0, 24)
    fields = [PointField(name=draw(st.sampled_from(["x", "y", "z", "rgb", "rgba", "i", ""])),
                         offset=draw(st.one_of(small, st.integers(0, 2**32 - 1))),
                         datatype=draw(st.integers(0, 255)),
                         count=draw(st.one_of(st.integers(0, 3), st.integers(0, 2**32 - 1))))
              for _ in range(draw(st.integers(0, 5)))]
    size = st.one_of(small, st.integers(0, 2**32 - 1))
    cloud = PointCloud2(height=draw(size), width=draw(size), point_step=draw(size), row_step=draw(size),
                        is_bigendian=draw(st.booleans()), fields=fields)
    cloud.data = draw(st.binary(max_size=200))
    return cloud


@settings(max_examples=200, deadline=None)
@given(garbage_clouds())
def test_garbage_clouds_raise_only_value_error(cloud):
    for convert in (cloud_dtype, cloud_to_array, cloud_to_xyz, cloud_to_rgb):
        try:
            convert(cloud)
        except ValueError:
            pass


# --------------------------------------------------------------------------- images


def image_arrays(encoding):
    _, dtype, channels = ENCODINGS[encoding]
    shape = hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=7)
    if channels > 1:
        shape = shape.map(lambda s: s + (channels,))
    elements = st.floats(width=32) if dtype == np.float32 else None
    return hnp.arrays(dtype, shape, elements=elements)


@SETTINGS
@given(st.sampled_from(sorted(ENCODINGS)).flatmap(lambda e: st.tuples(st.just(e), image_arrays(e))))
def test_image_round_trip(case):
    encoding, pixels = case
    image = array_to_image(pixels, encoding, header())
    _, dtype, channels = ENCODINGS[encoding]
    assert (image.height, image.width, image.encoding) == (pixels.shape[0], pixels.shape[1], encoding)
    assert image.step == pixels.shape[1] * channels * np.dtype(dtype).itemsize
    assert image.is_bigendian == 0
    assert bytes(image.data) == pixels.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    back = image_to_array(image)
    assert back.dtype == dtype and back.shape == pixels.shape
    np.testing.assert_array_equal(back, pixels)


@st.composite
def hand_built_images(draw):
    """(image, expected pixels) packed with struct, any byte order, step padding with garbage."""
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    code, dtype, channels = ENCODINGS[encoding]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    height, width = draw(st.integers(0, 5)), draw(st.integers(0, 6))
    pixel = channels * np.dtype(dtype).itemsize
    step = width * pixel + draw(st.integers(0, 5))
    big = draw(st.booleans())
    pixels = random_values(rng, dtype, (height, width, channels))
    data = bytearray(rng.integers(0, 256, height * step, dtype=np.uint8).tobytes())
    for row in range(height):
        struct.pack_into(f"{'>' if big else '<'}{width * channels}{code}", data, row * step,
                         *pixels[row].ravel().tolist())
    image = Image(header=header(), height=height, width=width, encoding=encoding, is_bigendian=int(big), step=step)
    image.data = bytes(data)
    return image, pixels if channels > 1 else pixels[..., 0]


@SETTINGS
@given(hand_built_images())
def test_hand_built_image_is_read_correctly(case):
    image, pixels = case
    array = image_to_array(image)
    assert array.dtype == pixels.dtype and array.dtype.isnative
    np.testing.assert_array_equal(array, pixels)

    if image.encoding in RGB_INDICES:
        np.testing.assert_array_equal(image_to_rgb(image), pixels[..., RGB_INDICES[image.encoding]])
    elif image.encoding == "mono8":
        np.testing.assert_array_equal(image_to_rgb(image), np.repeat(pixels[..., None], 3, axis=2))
    else:
        with pytest.raises(ValueError, match="cannot make RGB"):
            image_to_rgb(image)

    if image.encoding in ("16UC1", "mono16"):
        expected = np.where(pixels == 0, np.nan, pixels / 1000.0)
        np.testing.assert_allclose(depth_image_to_metres(image), expected, rtol=1e-6)
    elif image.encoding == "32FC1":
        expected = np.where(np.isfinite(pixels) & (pixels > 0), pixels, np.nan)
        np.testing.assert_array_equal(depth_image_to_metres(image), expected)
    else:
        with pytest.raises(ValueError, match="not a depth image"):
            depth_image_to_metres(image)


def test_depth_image_to_metres_marks_missing_readings():
    millimetres = array_to_image(np.array([[0, 1000, 65535]], np.uint16), "16UC1", header())
    np.testing.assert_array_equal(depth_image_to_metres(millimetres), np.array([[np.nan, 1.0, 65.535]], np.float32))
    metres = array_to_image(np.array([[np.nan, np.inf, -1.0, 0.0, 2.5]], np.float32), "32FC1", header())
    depth = depth_image_to_metres(metres)
    assert depth.dtype == np.float32
    np.testing.assert_array_equal(depth, [[np.nan, np.nan, np.nan, np.nan, 2.5]])


def test_image_to_array_is_a_read_only_view():
    image = array_to_image(np.zeros((2, 2), np.uint8), "mono8", header())
    with pytest.raises(ValueError):
        image_to_array(image)[0, 0] = 1
    image_to_rgb(image)[0, 0] = 1  # image_to_rgb returns a new array


def test_640x360_image_round_trip():
    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    image = array_to_image(bgr, "bgr8", header())
    assert (image.height, image.width, image.step, len(image.data)) == (360, 640, 1920, 360 * 1920)
    np.testing.assert_array_equal(image_to_array(image), bgr)
    np.testing.assert_array_equal(image_to_rgb(image), bgr[..., ::-1])
    depth = rng.integers(0, 8000, (360, 640), dtype=np.uint16)
    np.testing.assert_allclose(depth_image_to_metres(array_to_image(depth, "16UC1", header())),
                               np.where(depth == 0, np.nan, depth / 1000.0), rtol=1e-6)


# --------------------------------------------------------------------------- image errors


def _image(encoding="rgb8", height=2, width=3, step=9, length=18):
    image = Image(height=height, width=width, encoding=encoding, step=step)
    image.data = bytes(length)
    return image


@pytest.mark.parametrize("image, message", [
    (_image(encoding="yuv422"), "unsupported image encoding 'yuv422' .*supported: .*rgb8"),
    (_image(encoding=""), "unsupported image encoding ''"),
    (_image(length=17), "17 bytes but height 2 x step 9 = 18"),
    (_image(length=20), "20 bytes"),
    (_image(step=8, length=16), "step 8 is smaller than width 3 x 3 bytes per pixel"),
    (_image(encoding="16UC1", step=5, length=10), "step 5 is smaller than width 3 x 2"),
])
def test_image_to_array_rejects_malformed_images(image, message):
    with pytest.raises(ValueError, match=message):
        image_to_array(image)


@pytest.mark.parametrize("array, encoding, message", [
    (np.zeros((2, 3, 3), np.float32), "rgb8", "needs a uint8 array, got float32"),
    (np.zeros((2, 3), np.uint8), "16UC1", "needs a uint16 array, got uint8"),
    (np.zeros((2, 3), np.float64), "32FC1", "needs a float32 array, got float64"),
    (np.zeros((2, 3), np.int16), "mono16", "needs a uint16 array, got int16"),
    (np.zeros((2, 3, 4), np.uint8), "rgb8", r"needs an array of shape \(H, W, 3\), got \(2, 3, 4\)"),
    (np.zeros((2, 3, 1), np.uint8), "mono8", r"shape \(H, W\)"),
    (np.zeros((6,), np.uint8), "mono8", r"shape \(H, W\)"),
    (np.zeros((2, 3), np.uint8), "jpeg", "unsupported image encoding 'jpeg'"),
])
def test_array_to_image_rejects_arrays_that_do_not_fit_the_encoding(array, encoding, message):
    with pytest.raises(ValueError, match=message):
        array_to_image(array, encoding, header())


def test_array_to_image_writes_big_endian_input_little_endian():
    image = array_to_image(np.array([[1, 258]], ">u2"), "mono16", header())
    assert bytes(image.data) == b"\x01\x00\x02\x01"


@st.composite
def garbage_images(draw):
    size = st.one_of(st.integers(0, 12), st.integers(0, 2**32 - 1))
    image = Image(height=draw(size), width=draw(size), step=draw(size), is_bigendian=draw(st.integers(0, 255)),
                  encoding=draw(st.sampled_from(sorted(ENCODINGS) + ["8UC3", "yuv422", ""])))
    image.data = draw(st.binary(max_size=100))
    return image


@settings(max_examples=200, deadline=None)
@given(garbage_images())
def test_garbage_images_raise_only_value_error(image):
    for convert in (image_to_array, image_to_rgb, depth_image_to_metres):
        try:
            convert(image)
        except ValueError:
            pass


def test_the_stamp_is_read_from_serialized_clouds_and_images():
    """What the nodes' serialized frame inputs read before deciding to deserialize a frame."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from posesdf_ros.ros.node_base import SerializedFrame, serialized_stamp

    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 1_700_000_123, 456_789_000
    cloud = xyz_to_cloud(np.ones((4, 5, 3), np.float32), header)
    for msg in (cloud, Image(header=header, height=2, width=3, encoding="rgb8", step=9, data=bytes(18))):
        raw = serialize_message(msg)
        stamp = serialized_stamp(raw)
        assert (stamp.sec, stamp.nanosec) == (1_700_000_123, 456_789_000)
        back = SerializedFrame(raw, type(msg)).message()
        assert back.header.frame_id == "camera" and bytes(back.data) == bytes(msg.data)
    assert serialized_stamp(b"\x00\x01\x00") is None and serialized_stamp(b"not a CDR message") is None
