"""The Entra attribute-mapping expression language (Cloud Sync / provisioning service dialect).

Compile once with `compile_expression`, evaluate per object with `Expression.evaluate`; check a whole
mapping set at configuration load with `check_mappings`; `referenced_attributes` names what an
expression reads.
"""

from processors.expressions.compiler import Expression, check_mappings, compile_expression, referenced_attributes
from processors.expressions.defaults import DEFAULT_ANCHOR_EXPRESSION, DEFAULT_CN_EXPRESSION, DEFAULT_GROUP_MAPPINGS
from processors.expressions.errors import (
    ExpressionCheckError,
    ExpressionError,
    ExpressionEvaluationError,
    ExpressionSyntaxError,
)
from processors.expressions.values import IGNORE_FLOW

__all__ = [
    "DEFAULT_ANCHOR_EXPRESSION",
    "DEFAULT_CN_EXPRESSION",
    "DEFAULT_GROUP_MAPPINGS",
    "IGNORE_FLOW",
    "Expression",
    "ExpressionCheckError",
    "ExpressionError",
    "ExpressionEvaluationError",
    "ExpressionSyntaxError",
    "check_mappings",
    "compile_expression",
    "referenced_attributes",
]
