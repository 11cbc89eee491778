"""AWS IAM access-key collector: inventories IAM access keys across an AWS organization into Log Analytics.

Data flows one way: settings -> credentials -> sources -> records -> sinks. This package never imports
``azure.functions``; ``function_app.py`` wires it into the Functions host.
"""

__version__ = "0.1.0"
