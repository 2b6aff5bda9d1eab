"""Local tools: never part of the deployed function app (see .funcignore).

The stand-in for the Functions host (`host`: tick and drain; `serve`), Azurite on free ports
(`devstorage`, with the emulator's well-known account), the demo, progress bars and the fault proxy.
Nothing deployed imports this package; the CLI imports it only in the verbs that use it.
"""
