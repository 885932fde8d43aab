"""Sandboxes across engines: the engines a pool uses and their health (``engines``),
where each warm sandbox goes (``placement``, pure), the warm pools that fill, hand out
and refill them (``pool``), the labels every container carries (``labels``) and the one
place that removes labelled containers (``reaper``)."""
