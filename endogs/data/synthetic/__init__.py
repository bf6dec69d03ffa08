"""Deterministic synthetic endoscopic scene with exact ground truth.

The scene is the bundled sample of ``make demo`` and the fixture of many tests. It is a textured,
deforming tissue surface seen by a pinhole endoscope with a head light, partly occluded by a grey
surgical tool, with stereo-like noisy depth and exact tissue depth. :func:`generate` builds it in memory;
:func:`write_endonerf` and :func:`write_scared` write it in the two on-disk layouts the loaders read
(see the shared FORMATS.md §1 and §2.3, and the layout in each writer's docstring).

Geometry (all lengths in mm, OpenCV axes: x right, y down, z forward):

* World frame = camera frame of frame 0. The tissue is the height field ``z = distance + h(x, y, t)``
  (:func:`surface_z`), defined everywhere (it spans far beyond the view), with gentle slopes
  (|grad h| < 0.49 + 0.29 * deformation + |tilt|) so that every pixel ray meets it exactly once; the hit is
  found by Newton iterations and is exact to float32 precision.
* ``h`` = an optional tilt of the mean plane (``tilt``, an oblique view) + a static dome and folds (seeded) + breathing (a slow global rise and fall, with a small
  lateral expansion) + a "pulled" bump that rises up to ~4 mm towards the camera and slides ~5 mm
  while the tool holds it. All motion is zero at t = 0 and smooth in t.
* The albedo is a function of material coordinates ``(X, Y) = (x, y) - u(x, y, t)`` (u = the lateral
  displacement, zero at t = 0), so the texture moves with the tissue.
* Shading: point light at the camera centre; Lambert with 1/r² falloff normalised to 1 at r = distance,
  plus a white Blinn-Phong highlight (the half vector equals the light direction for a head light).
  A faint material-attached bump map breaks highlights into wet-looking speckles.
* Tool: a union of capsules (shaft + two jaws) in world space whose jaw tips hold the bump; ray-cast
  exactly, so the tool mask is exact per pixel centre and the noisy depth contains the tool's depth.
* Noisy depth: visible depth + spatially correlated noise with std ``depth_noise * (z / 60)^2``;
  holes (0): a strip at the left border, pixels the right camera cannot see (left of the tool's
  edges), pixels near specular highlights and a few random blobs.

Frame ``i`` has time ``t = i / (N - 1)`` (0 for a single frame). Same config → same arrays and the same
bytes on disk.

The package, by concern: ``config`` (options, constants, the in-memory scene), ``surface`` (the
deforming tissue and its texture), ``tool`` (capsule ray casting), ``render`` (frames and
ground-truth queries, :func:`generate`), ``writers`` (the two on-disk layouts).
"""

from endogs.data.synthetic.config import DEPTH_PNG_SCALE, FORMAT_VERSION, SceneExistsError, SyntheticConfig, SyntheticScene
from endogs.data.synthetic.render import SyntheticView, generate, material_coords, render_view, surface_z, tissue_points
from endogs.data.synthetic.writers import depth_to_png16, poses_bounds, reprojection_matrix, write_endonerf, write_scared, write_synthetic_scene, _atomic_dir
