"""Analysis: OCR and transcription of URLs and uploaded files."""

from server.routes.tasks import task_routes

ROUTES = [
    handler
    for task in ("img2txt", "vid2txt", "aud2txt", "videofile2txt", "audiofile2txt")
    for handler in task_routes(task)
]
