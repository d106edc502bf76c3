"""The three roles, each allowed everything the one before it is."""

from __future__ import annotations

from enum import IntEnum


class Role(IntEnum):
    """What a user may do; a higher role may do everything a lower one may.

    * ``annotator``: next sample, download and upload images, every infer model, submit ``final`` labels,
      start and stop training, read training status.
    * ``reviewer``: an annotator who may also read every label.
    * ``admin``: everything, including deleting images and labels, uploading or replacing model weights, logs and
      dataset export.
    """

    ANNOTATOR = 1
    REVIEWER = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        """The role called ``name`` (case-insensitive); ``ValueError`` naming the accepted roles otherwise."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}; accepted: {', '.join(ROLES)}") from None

    def __str__(self) -> str:
        return self.name.lower()


ROLES = tuple(str(role) for role in Role)


def allows(role: Role, needed: Role) -> bool:
    """Whether a user with ``role`` may do what needs ``needed``."""
    return role >= needed
