#!/usr/bin/env python3
"""torchvision weights and images for a network compiled by resnet-compile.

    # the weights: a torchvision ResNet's state_dict as safetensors, under the
    # names NAME_load reads (needs torch, torchvision and safetensors)
    python3 Examples/torchvision_to_safetensors.py weights resnet50.safetensors            # random (weights=None)
    python3 Examples/torchvision_to_safetensors.py weights resnet50.safetensors --pretrained IMAGENET1K_V1

    # an image, prepared as torchvision's ImageNet models expect it: shorter side
    # resized to 256 (bilinear, antialiased), centre crop 224, /255, ImageNet
    # mean and std, NCHW float32 (needs nothing but Python; Pillow for JPEG)
    python3 Examples/torchvision_to_safetensors.py image cat.jpg cat.f32                   # raw C×H×W float32
    python3 Examples/torchvision_to_safetensors.py image cat.jpg cat.safetensors           # tensor 'input', 1×C×H×W

Compile the network with the stride where torchvision puts it, or its
weights load without an error and give other outputs:

    let net = try ResNet.imagenet(depth: 50, variant: .torchvision)   # Examples/TorchvisionResNet50.swift

The raw .f32 file is what Examples/embed-c's classify reads:
`classify resnet50.safetensors cat.f32`.

The preparation is torchvision's `Resize(256)`, `CenterCrop(224)`,
`ToTensor()`, `Normalize(mean, std)` on a PIL image (what the IMAGENET1K_V1
weights' `transforms()` do; IMAGENET1K_V2 resizes to 232: `--resize 232`).
Without Pillow, or with `--pure`, the resize is done here in plain Python,
the same arithmetic as Pillow's (8-bit fixed point, horizontal pass first),
so the result is the same bits; that path reads PNG and binary PPM only, and
takes seconds per megapixel. The test suite checks it against tensors that
torchvision itself produced (Tests/Fixtures/make_image_fixture.py).
"""
import argparse
import json
import os
import struct
import sys
import zlib

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def f32(x):
    """x rounded to float32 (an exact float32 operation on float32 operands,
    done in double and rounded once: +, -, *, / round the same way)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


# --- Reading images ------------------------------------------------------

def read_ppm(data):
    """Binary PPM (P6, maxval 255): (width, height, RGB bytes)."""
    fields, pos = [], 2
    while len(fields) < 3:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(int(data[pos:end]))
        pos = end
    width, height, maxval = fields
    if maxval != 255:
        raise ValueError(f"PPM maxval {maxval}: only 8-bit PPM is read")
    pixels = data[pos + 1:pos + 1 + 3 * width * height]
    if len(pixels) != 3 * width * height:
        raise ValueError("PPM: truncated pixel data")
    return width, height, bytes(pixels)


def read_png(data):
    """8-bit, non-interlaced PNG (grey, grey+alpha, RGB, RGBA): (width, height,
    RGB bytes); alpha is dropped, grey repeated, as PIL's convert("RGB") does."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace != 0:
        raise ValueError(f"PNG bit depth {depth}, colour type {colour}, interlace {interlace}: "
                         "only 8-bit non-interlaced grey/RGB(A) is read without Pillow")
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                upleft = previous[i - channels] if i >= channels else 0
                p = left + up - upleft
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else upleft)) & 255
        rows.append(bytes(line))
        previous = line
    rgb = bytearray()
    for line in rows:
        for x in range(width):
            px = line[x * channels:(x + 1) * channels]
            rgb += bytes((px[0], px[0], px[0])) if channels <= 2 else px[:3]
    return width, height, bytes(rgb)


def read_image(path, pure):
    """(width, height, RGB bytes, whether Pillow read it)."""
    if not pure:
        try:
            from PIL import Image
        except ImportError:
            pure = True
        else:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
                return rgb.width, rgb.height, rgb, True
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"P6":
        return (*read_ppm(data), False)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return (*read_png(data), False)
    raise ValueError(f"{path}: without Pillow only PNG and binary PPM (P6) are read (pip install pillow)")


# --- Resizing as Pillow does (bilinear, antialiased) ----------------------

PRECISION_BITS = 32 - 8 - 2


def coefficients(in_size, out_size):
    """Per output pixel: the first input pixel, and the fixed-point weights of
    the inputs from there (Pillow's precompute_coeffs and normalize_coeffs_8bpc
    for the bilinear filter, support 1, widened by the scale when shrinking)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    ss = 1.0 / filterscale
    result = []
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights, total = [], 0.0
        for x in range(xmax):
            t = abs((x + xmin - center + 0.5) * ss)
            weights.append(1.0 - t if t < 1.0 else 0.0)
            total += weights[-1]   # in order (Python 3.12's sum() compensates, Pillow does not)
        if total != 0.0:
            weights = [w / total for w in weights]
        fixed = [int(-0.5 + w * (1 << PRECISION_BITS)) if w < 0 else int(0.5 + w * (1 << PRECISION_BITS)) for w in weights]
        result.append((xmin, fixed))
    return result


def clip8(v):
    return min(max(v >> PRECISION_BITS, 0), 255)


def resample_rows(rows, new_width):
    """Each row of RGB bytes resampled to new_width pixels."""
    half = 1 << (PRECISION_BITS - 1)
    taps = coefficients(len(rows[0]) // 3, new_width)
    resized = []
    for row in rows:
        out = bytearray(new_width * 3)
        for xx, (xmin, weights) in enumerate(taps):
            for c in range(3):
                s = half
                for k, w in enumerate(weights):
                    s += row[(xmin + k) * 3 + c] * w
                out[xx * 3 + c] = clip8(s)
        resized.append(bytes(out))
    return resized


def resample_columns(rows, new_height):
    """The rows resampled to new_height rows."""
    half = 1 << (PRECISION_BITS - 1)
    resized = []
    for ymin, weights in coefficients(len(rows), new_height):
        out = bytearray(len(rows[0]))
        for i in range(len(out)):
            s = half
            for k, w in enumerate(weights):
                s += rows[ymin + k][i] * w
            out[i] = clip8(s)
        resized.append(bytes(out))
    return resized


def resize(rgb, width, height, new_width, new_height):
    """RGB bytes resized to new_width × new_height in two passes, each rounded
    to 8 bits; an axis whose size stays is not resampled. Pillow 13 does the
    horizontal pass first unless the height shrinks by more than twice as
    many pixels as the width (older Pillow always does it first; the order
    changes the last bit of some pixels)."""
    rows = [rgb[y * width * 3:(y + 1) * width * 3] for y in range(height)]
    horizontal_first = not (height - new_height > 0 and height - new_height > (width - new_width) * 2)
    if horizontal_first and new_width != width:
        rows = resample_rows(rows, new_width)
    if new_height != height:
        rows = resample_columns(rows, new_height)
    if not horizontal_first and new_width != width:
        rows = resample_rows(rows, new_width)
    return b"".join(rows)


# --- The preparation ------------------------------------------------------

def resized_size(width, height, shorter):
    """torchvision's Resize(int): the shorter side becomes `shorter`, the
    longer one int(shorter * long / short)."""
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def crop_origin(width, height, crop):
    """torchvision's CenterCrop: (left, top), rounded half to even as Python's round."""
    if crop > width or crop > height:
        raise ValueError(f"crop {crop} is larger than the resized image {width}×{height}")
    return int(round((width - crop) / 2.0)), int(round((height - crop) / 2.0))


def normalise(rgb, width, left, top, crop, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """The crop as C×H×W float32 values: /255, then (x − mean) / std per
    channel, each step rounded to float32 as torch computes it."""
    values = []
    for c in range(3):
        m, s = f32(mean[c]), f32(std[c])
        for y in range(top, top + crop):
            base = y * width * 3
            for x in range(left, left + crop):
                values.append(f32(f32(f32(rgb[base + x * 3 + c] / 255.0) - m) / s))
    return values


def prepare(path, resize_to=256, crop=224, pure=False):
    """The image at `path` as torchvision's ImageNet preprocessing makes it:
    (list of C×crop×crop float32 values, what read and resized it)."""
    width, height, image, by_pillow = read_image(path, pure)
    new_width, new_height = resized_size(width, height, resize_to)
    if by_pillow:
        from PIL import Image
        if (new_width, new_height) != (width, height):
            image = image.resize((new_width, new_height), Image.BILINEAR)
        rgb = image.tobytes()
    else:
        rgb = resize(image, width, height, new_width, new_height)
    left, top = crop_origin(new_width, new_height, crop)
    how = "Pillow" if by_pillow else "plain Python"
    return normalise(rgb, new_width, left, top, crop), f"{width}×{height} → {new_width}×{new_height} ({how}), crop {crop} at ({left}, {top})"


def write_safetensors(path, tensors, metadata):
    """F32 tensors {name: (shape, values)} as a safetensors file."""
    header, offset = {"__metadata__": metadata}, 0
    for name, (shape, values) in tensors.items():
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 4 * len(values)]}
        offset += 4 * len(values)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for _, values in tensors.values():
            f.write(struct.pack(f"<{len(values)}f", *values))


def image_command(args):
    values, how = prepare(args.image, args.resize, args.crop, args.pure)
    if args.output.endswith(".safetensors"):
        write_safetensors(args.output, {"input": ([1, 3, args.crop, args.crop], values)},
                          {"source": f"{os.path.basename(args.image)}: {how}, ImageNet mean/std"})
    else:
        with open(args.output, "wb") as f:
            f.write(struct.pack(f"<{len(values)}f", *values))
    print(f"{args.output}: 1×3×{args.crop}×{args.crop} float32 from {args.image}, {how}")


def weights_command(args):
    import torch
    import torchvision
    from safetensors.torch import save_file

    weights = args.pretrained
    try:
        model = torchvision.models.get_model(args.model, weights=weights)
    except KeyError:
        raise ValueError(f"torchvision has no weights '{weights}' for {args.model} "
                         f"(IMAGENET1K_V1, IMAGENET1K_V2 where it exists, or DEFAULT)") from None
    # Every state_dict entry, in torchvision's names: F32 tensors and the I64
    # num_batches_tracked counters (NAME_load accepts them).
    state = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    save_file(state, args.output, metadata={"source": f"torchvision {torchvision.__version__} {args.model} weights={weights}"})
    floats = sum(t.numel() for t in state.values() if t.dtype == torch.float32)
    depth = int(args.model[len("resnet"):])
    network = f"ResNet.imagenet(depth: {depth}" + (", variant: .torchvision)" if depth >= 50 else ")")
    print(f"{args.output}: {len(state)} tensors, {floats} floats of torchvision's {args.model} (weights={weights}); "
          f"compile the network as {network}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("weights", help="save a torchvision ResNet's state_dict as safetensors")
    w.add_argument("output")
    w.add_argument("--model", default="resnet50", choices=["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"],
                   help="which torchvision ResNet (default resnet50)")
    w.add_argument("--pretrained", metavar="WEIGHTS", default=None,
                   help="a torchvision weights name (IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT; downloads); default: random weights")
    w.set_defaults(run=weights_command)
    i = sub.add_parser("image", help="prepare an image: resize, centre crop, ImageNet normalisation, NCHW float32")
    i.add_argument("image")
    i.add_argument("output", help="OUT.safetensors (tensor 'input', 1×3×H×W) or any other name for raw float32 C×H×W")
    i.add_argument("--resize", type=int, default=256, help="the shorter side after resizing (default 256)")
    i.add_argument("--crop", type=int, default=224, help="the centre crop's side (default 224)")
    i.add_argument("--pure", action="store_true", help="read and resize in plain Python even when Pillow is installed")
    i.set_defaults(run=image_command)
    args = parser.parse_args()
    try:
        args.run(args)
    except (OSError, ValueError) as e:
        sys.exit(f"torchvision_to_safetensors.py: error: {e}")


if __name__ == "__main__":
    main()
