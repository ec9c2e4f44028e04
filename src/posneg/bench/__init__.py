"""The runs behind `posneg bench ...`: recipes, train/eval loops and the report writer."""
