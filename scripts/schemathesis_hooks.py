"""Schemathesis hooks for hermet's contract run (scripts/schemathesis.sh).

- Authentication: a signed-in user's access token on every request. The run calls
  `POST /api/v1/auth/sign-out` too, which revokes the session; a 401 makes schemathesis
  ask for a fresh token (`retry_on` defaults to 401), and this signs in again.
- Opaque cursors: `cursor` is "the `nextCursor` of the previous page", a value no schema
  can describe; a made-up one is rightly refused (400 `validation_failed`). Positive
  cases therefore leave it out; negative cases keep it (and expect the 400).
- Path values: schemathesis writes a non-string path value of a negative case (a list,
  say) as its Python text and leaves `?` and `#` in it unencoded, so the path ends early
  and the request goes to another route (a `POST` to `/channels/[['x` answered 405,
  counted against the operation it meant). Such a value is sent as a string with those
  two characters percent-encoded: still not an id, still the 400 it is meant to get.
"""

import json
import os
import time
import urllib.error
import urllib.request

import schemathesis

BASE = os.environ["SCHEMATHESIS_HERMET_BASE"]
ACCOUNT = os.environ["SCHEMATHESIS_HERMET_ACCOUNT"]
PASSWORD = os.environ["SCHEMATHESIS_HERMET_PASSWORD"]


def _sign_in():
    body = json.dumps({"account": ACCOUNT, "accountType": "email", "credential": PASSWORD}).encode()
    for _ in range(30):
        req = urllib.request.Request(
            BASE + "/api/v1/auth/sign-in", data=body, headers={"content-type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.load(r)["accessToken"]
        except urllib.error.HTTPError as e:
            # the run's own sign-in cases share the per-address budget
            if e.code in (429, 503):
                time.sleep(float(e.headers.get("retry-after") or 1))
                continue
            raise
    raise RuntimeError("could not sign in the run's user")


@schemathesis.auth()
class HermetAuth:
    def get(self, case, context):
        return _sign_in()

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


def _path_safe(value):
    text = str(value)
    if "?" not in text and "#" not in text:
        return value
    return text.replace("?", "%3F").replace("#", "%23")


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if meta is not None and meta.generation.mode.is_positive and case.query and "cursor" in case.query:
        case.query = {k: v for k, v in case.query.items() if k != "cursor"}
    if case.path_parameters:
        case.path_parameters = {k: _path_safe(v) for k, v in case.path_parameters.items()}
    return case
