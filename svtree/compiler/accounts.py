"""user / group -> uid, gid and supplementary groups, from the passwd and group databases."""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from svtree.compiler.settings import Invalid


@dataclass(frozen=True)
class Identity:
    uid: "int | None"
    gid: "int | None"
    groups: "tuple[int, ...] | None"


UNCHANGED = Identity(None, None, None)  # run as svtree itself runs


class Accounts:
    """Looks users and groups up, once each per compile (5,000 services may share one user)."""

    def __init__(self) -> None:
        self._users: "dict[int | str, pwd.struct_passwd | None]" = {}
        self._groups: "dict[int | str, grp.struct_group | None]" = {}

    def _user(self, user: "int | str") -> "pwd.struct_passwd | None":
        if user not in self._users:
            try:
                self._users[user] = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
            except (KeyError, OverflowError):
                self._users[user] = None
        return self._users[user]

    def _group(self, group: "int | str") -> "grp.struct_group | None":
        if group not in self._groups:
            try:
                self._groups[group] = grp.getgrgid(group) if isinstance(group, int) else grp.getgrnam(group)
            except (KeyError, OverflowError):
                self._groups[group] = None
        return self._groups[group]

    def resolve(self, user: "int | str | None", group: "int | str | None"
                ) -> "tuple[Identity | None, dict[str, Invalid]]":
        """The identity, or None and what is wrong, by key ("user", "group").

        user alone: its uid, primary gid and all its groups (os.getgrouplist).
        group alone: uid unchanged (None), that gid, groups = (gid,).
        both: the user's uid and groups, with the given group as primary.
        """
        errors: "dict[str, Invalid]" = {}
        entry = None
        uid = gid = None
        if user is not None:
            entry = self._user(user)
            if isinstance(user, str) and entry is None:
                errors["user"] = Invalid(f'no user named "{user}"',
                                         "create it in the image with useradd, or give a uid number")
            elif entry is None and group is None:
                errors["user"] = Invalid(f"uid {user} has no entry in /etc/passwd, so it has no "
                                         "primary group", "set group too")
            else:
                uid = entry.pw_uid if entry is not None else user
        if group is not None:
            gentry = self._group(group)
            if isinstance(group, str) and gentry is None:
                errors["group"] = Invalid(f'no group named "{group}"',
                                          "create it in the image with groupadd, or give a gid number")
            else:
                gid = gentry.gr_gid if gentry is not None else group
        if errors:
            return None, errors
        if user is None and group is None:
            return UNCHANGED, errors
        if gid is None:
            gid = entry.pw_gid  # user alone, with a passwd entry (checked above)
        if entry is not None:
            groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, gid)) | {gid}))
        else:
            groups = (gid,)
        return Identity(uid, gid, groups), errors
