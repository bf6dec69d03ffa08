"""Browser viewer for endogs reconstructions (nerfview/viser).

* ``endogs view RUN`` -> :func:`viewer.cli.view` (and :func:`viewer.cli.open_viewer` to embed it);
* ``endogs train --viewer`` -> :func:`viewer.live.train_with_viewer`;
* the render function itself (no viser needed) -> :class:`viewer.core.ViewRenderer`.
"""
