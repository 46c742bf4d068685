"""HTTP inference: base + adapter (or a merged model) behind FastAPI/uvicorn.

app.py builds the FastAPI app (endpoints, request validation, prompt layouts);
server.py runs it with uvicorn, in the foreground or in a thread (tests, notebooks).
"""
