"""The function app's functions, indexed once: get_functions() keeps state, so a second call fails."""

import function_app

FUNCTIONS = {f.get_function_name(): f for f in function_app.app.get_functions()}
