"""Transformation: image-to-image, background removal, upscaling."""

from server.routes.tasks import task_routes

ROUTES = [handler for task in ("img2img", "img-rmbg", "img-upscale") for handler in task_routes(task)]
