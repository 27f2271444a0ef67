"""Per-dataset settings ("presets"), one data file per algorithm, each entry citing its source.

These files are data only for now: `spot.json` holds SPOT's lambda per D4RL dataset from the
authors' configs. Reading a preset by dataset name, recording it in config.json and exposing it
on the command line comes with issue 16; until then pass the value yourself (e.g.
`offrl train spot --support-weight 0.1` for hopper-medium).
"""
