"""Generation: images, video, speech, music and embeddings from text."""

from server.routes.tasks import task_routes

ROUTES = [
    handler
    for task in ("txt2img", "txt2video", "img2video", "aud2video", "txt2audio", "txt2music", "txt2embedding")
    for handler in task_routes(task)
]
