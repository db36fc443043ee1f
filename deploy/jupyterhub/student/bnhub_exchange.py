"""An nbgrader submit step that keeps a submission private to its student and the graders.

nbgrader's default exchange makes every submitted file world-readable and relies on the inbound
folder not being listable and on a random suffix in the submission's name. Here the course's
exchange folder belongs to the graders' group and has the set-group-ID bit (setup_course.sh), so
new submissions belong to that group; this step keeps them so and takes away the "other"
permission bits.
"""

import os
import shutil
from stat import S_IRWXO

from nbgrader.exchange.default.submit import ExchangeSubmit
from nbgrader.utils import ignore_patterns


class PrivateSubmit(ExchangeSubmit):
    """Submit like nbgrader, but with no access for other users (mode 0640 files, 0750 dirs)."""

    def do_copy(self, src, dest):
        """Copy like nbgrader, but leave folder modes alone.

        shutil.copytree copies each folder's mode from the student's copy, which clears the
        set-group-ID bit; the files nbgrader writes next (timestamp, secret) would then belong
        to the student's own group and the graders could not read them.
        """
        size = self.get_size(src)
        if size > 1000 * self.coursedir.max_dir_size:
            raise RuntimeError(f"Directory size is too big: {size} bytes")
        ignore = ignore_patterns(
            exclude=self.coursedir.ignore,
            include=self.coursedir.include,
            max_file_size=self.coursedir.max_file_size,
            log=self.log,
        )
        for folder, subfolders, files in os.walk(src):
            ignored = ignore(folder, subfolders + files)
            subfolders[:] = [name for name in subfolders if name not in ignored]
            target = os.path.join(dest, os.path.relpath(folder, src))
            os.makedirs(target, exist_ok=True)
            for name in files:
                if name not in ignored:
                    shutil.copyfile(os.path.join(folder, name), os.path.join(target, name))

    def set_perms(self, dest, fileperms, dirperms):
        super().set_perms(dest, fileperms & ~S_IRWXO, dirperms & ~S_IRWXO)

    def copy_files(self):
        super().copy_files()
        # nbgrader opens the submission folder to everyone (0777) so that instructors can
        # delete it; the graders' group is enough for that.
        os.chmod(os.path.join(self.inbound_path, self.assignment_filename), 0o770)
