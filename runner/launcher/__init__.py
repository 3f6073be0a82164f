"""The launcher: provision many users at once through Jobs, follow them with one watch per
kind, and end with a summary (`workshop-runner launch | status | teardown`).

render   -> the objects (deploy base, per-launch ConfigMap, Jobs), built in Python from the
            shipped manifests
apply    -> server-side apply of those objects, in dependency order
watch    -> list + watch of Jobs and Pods by the launch's label selector
progress -> per-user state derived from Jobs, Pods, the step annotation, termination messages
display  -> live table on a terminal, one JSON line per state change otherwise
summary  -> the final table, the JSON summary and the exit code
"""
