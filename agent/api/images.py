"""images: `GET /images/{ref}`, the image lookup of the compute clients, without an image
service.

Given one endpoint (`--os-endpoint`), openstackclient and openstacksdk ask it as their image
service too: `openstack server create --image REF` fetches `GET /images/REF` before it posts
the server (and gives up when that fails), and `server show` fetches the server's image for
its name. The agent keeps no images and runs no glance: the driver is given the reference as
it was recorded (fakevirt ignores it; libvirt names it in the domain's description and boots
its small guests without a disk). So any reference answers as an active image whose id and
name are the reference, in glance v2's shape (a bare object, as the clients' image service
parses it), and `imageRef` carries it into the server."""

from __future__ import annotations

from agent.api.context import Call
from agent.api.faults import ApiError
from agent.values import has_control_characters

MAX_REF = 255  # characters, as the servers' image_ref column


def image(ref: str) -> dict:
    """The image the clients are shown for `ref`: {"id": ref, "name": ref, "status":
    "active"}, the keys they read (glance v2 names; nothing is known of sizes or formats, so
    nothing is said)."""
    return {"id": ref, "name": ref, "status": "active"}


def show(call: Call, ref: str) -> tuple[int, dict]:
    """200 with the image for any reference of 1 to 255 characters; 404 (nova's
    `Image not found.`) for one that no server could record (longer, or with control
    characters)."""
    if len(ref) > MAX_REF or has_control_characters(ref):
        raise ApiError(404, "Image not found.")
    return 200, image(ref)


ROUTES = (("GET", r"/images/(?P<ref>[^/]+)", show),)
