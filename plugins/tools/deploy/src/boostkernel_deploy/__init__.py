"""boostkernel-deploy: ``boostkernel deploy`` runs consumers of a module on another host over SSH.

* ``boostkernel deploy MODULE --host HOST -n 4`` ships the project and the wheels it needs, installs them
  into a virtualenv on the host and starts 4 workers that outlive the SSH session;
* ``boostkernel deploy status`` / ``boostkernel deploy stop`` manage them.

The SSH client (asyncssh) is imported only when a deploy command runs.
"""

from __future__ import annotations
