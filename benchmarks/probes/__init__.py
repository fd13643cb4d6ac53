"""Child-side code: everything here runs inside a fresh benchmark subprocess.

These modules are imported by ``benchmarks/child.py`` run as a *script* (so that the peers'
interpreter, which has upstream ``ml_dash`` installed under the same import name as ours, never
sees this checkout on ``sys.path``). Therefore they import only the standard library at module
level, use relative imports among themselves, and import the tool under test lazily.
"""
