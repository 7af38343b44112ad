"""Parses a /metrics answer with the Prometheus project's own Python parsers.

Reads the exposition from stdin; argv[1] is `prometheus` (text format 0.0.4) or
`openmetrics`. Prints one JSON list of samples: [name, labels, value], and exits non-zero
(with the parser's error) when the text does not parse.
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as prom_parse

text = sys.stdin.read()
parse = om_parse if sys.argv[1] == "openmetrics" else prom_parse
samples = []
for family in parse(text):
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
print(json.dumps(samples))
