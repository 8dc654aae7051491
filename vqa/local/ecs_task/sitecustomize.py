"""Loaded by Python at start-up in an emulated ECS task (this directory is on its PYTHONPATH).

It installs local IAM enforcement for the whole process, acting as the task role whose resolved
policies the emulation wrote to ``$VQA_LOCAL_IAM_POLICY``: the worker's own code is unchanged.
"""

from vqa.local.iam import install_from_env

install_from_env()
