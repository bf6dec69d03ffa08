"""Browser viewer for endogs reconstructions (nerfview/viser).

* ``endogs view RUN`` -> :func:`endogs.viewer.cli.view` (and :func:`endogs.viewer.cli.open_viewer` to embed it);
* ``endogs train --viewer`` -> :func:`endogs.viewer.live.train_with_viewer`;
* the render function itself (no viser needed) -> :class:`endogs.viewer.core.ViewRenderer`.
"""
