"""Read and write images without losing anything, and the single ``[0, 1]`` float ↔ tensor conversion point.

Modules, one job each (the names below are re-exported here):

* :mod:`.decode`: :func:`load_image`: format sniffing and the decoders; it opens files through :mod:`.files`
  (regular files only, never blocking) and checks them against :mod:`.budget` (pixel limit, single frames,
  the most pixels the bytes can hold) before decoding.
* :mod:`.encode`: :func:`save_image`: checks, the encoders per format (:mod:`.png16`: the 16-bit PNG encoder;
  :mod:`.heif`: HEIC/HEIF both ways), then :mod:`.atomic` (hidden temp file, fsync, a move that never replaces).
* :mod:`.metadata`: EXIF, orientation, DPI, XMP and PNG text, read from and written into each container;
  :mod:`.quality`: JPEG quality, estimated and chosen; :mod:`.resize`: :func:`resized`.
* :mod:`.convert`: samples ↔ ``[0, 1]`` float32 pixels ↔ ``(1, C, H, W)`` tensors, the only place values are
  converted; :mod:`.image`: the :class:`Image` record and the format tables.

Decoders, chosen per file by its content (never by its suffix):

* PNG, JPEG, WebP, BMP and 8-bit TIFF: Pillow, after the checks of the decode budget (:mod:`.budget`: truncated
  files and headers that declare more than the data can hold are refused before anything is decoded). A
  multi-picture JPEG (MPO: the primary image plus previews or depth maps, as cameras and phones write) is read as
  its primary image.
* HEIC/HEIF: the optional ``pillow-heif`` package (``pip install 'restorekit[heif]'``), primary image, 8 bits.
* Camera RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, …) are refused with a line that says how to proceed.
* 16-bit PNG: OpenCV (libpng); Pillow would reduce 16-bit colour PNGs to 8 bits.
* 16-bit and float32 TIFF, and 8-bit TIFF with an unspecified extra sample (Pillow would drop it): tifffile, or
  OpenCV (libtiff) where tifffile lacks the codec (LZW, JPEG and the floating-point predictor need the optional
  ``imagecodecs`` package).

A TIFF may have one extra sample beyond its colour channels, read as alpha; more are refused at every depth,
with a message naming them, rather than dropped.

Encoders:

* 8-bit PNG, JPEG, WebP, BMP: Pillow; HEIC/HEIF: pillow-heif.
* 16-bit PNG: a small encoder (:mod:`.png16`: Paeth filter, zlib), the only way to write 16-bit gray+alpha and
  ICC/EXIF.
* TIFF at every depth: tifffile (Deflate; horizontal predictor for integers), EXIF IFDs appended by
  :mod:`.metadata`.
"""

from restorekit.inference.io.atomic import NAME_MAX, hidden_name, temp_path, temp_pattern
from restorekit.inference.io.budget import (
    BUILTIN_MAX_PIXELS,
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    MAX_TIFF_IFDS,
)
from restorekit.inference.io.budget import _max_pixels_from_env as _max_pixels_from_env
from restorekit.inference.io.convert import image_to_tensor, tensor_to_pixels
from restorekit.inference.io.decode import RAW_SUFFIXES, load_image, raw_error
from restorekit.inference.io.decode import _sniff_format as _sniff_format
from restorekit.inference.io.encode import save_image
from restorekit.inference.io.files import check_input_file
from restorekit.inference.io.heif import HEIF_EXTRA
from restorekit.inference.io.image import SUPPORTED_SUFFIXES, Image, format_suffix
from restorekit.inference.io.quality import DEFAULT_QUALITY, jpeg_quality, output_quality
from restorekit.inference.io.resize import resized

__all__ = [
    "BUILTIN_MAX_PIXELS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_QUALITY",
    "HEIF_EXTRA",
    "MAX_PIXELS_ENV",
    "MAX_TIFF_IFDS",
    "NAME_MAX",
    "RAW_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "Image",
    "check_input_file",
    "format_suffix",
    "hidden_name",
    "image_to_tensor",
    "jpeg_quality",
    "load_image",
    "output_quality",
    "raw_error",
    "resized",
    "save_image",
    "temp_path",
    "temp_pattern",
    "tensor_to_pixels",
]
