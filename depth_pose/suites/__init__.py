"""Test suites that synthesise their people with ``generation`` (an app layer above the core and generation).

``suite=NAME`` in ``dp-eval`` runs ``depth_pose.suites.NAME``.
"""
