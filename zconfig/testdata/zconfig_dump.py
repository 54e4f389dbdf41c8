"""Parse a ZConfig file with ZConfig's own parser and print its tree as JSON.

Used by parity_test.go to compare the Go parser with the real one. Keys are
lower-cased here because ZConfig leaves that to its schema matcher.
Exit status 0 with the tree on stdout, or 1 with the error on stdout.
"""
import json
import os
import sys

import ZConfig
import ZConfig.url
from ZConfig.cfgparser import ZConfigParser


class Section:
    def __init__(self, type_, name):
        self.type, self.name = type_ or "", name or ""
        self.keys, self.sections, self.imports = [], [], []

    def addValue(self, key, value, position):
        self.keys.append([key.lower(), value])

    def tree(self):
        return {"type": self.type, "name": self.name, "keys": self.keys,
                "imports": self.imports,
                "sections": [s.tree() for s in self.sections]}


class Resource:
    def __init__(self, path):
        self.file = open(path)
        self.url = "file://" + os.path.abspath(path)


class Parser(ZConfigParser):
    __slots__ = ()

    def handle_import(self, section, rest):
        # Record the package on the section it occurs in.
        section.imports.append(self.replace(rest.strip()))


class Context:
    def startSection(self, container, type_, name):
        section = Section(type_, name)
        container.sections.append(section)
        return section

    def endSection(self, container, type_, name, section):
        pass

    def includeConfiguration(self, section, url, defines):
        path = url[len("file://"):] if url.startswith("file://") else url
        Parser(Resource(path), self, defines).parse(section)


def main(path):
    root = Section("", "")
    try:
        Parser(Resource(path), Context()).parse(root)
    except (ZConfig.ConfigurationError, UnicodeDecodeError, OSError,
            RecursionError) as e:
        print(json.dumps({"error": str(e)}))
        return 1
    print(json.dumps(root.tree()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
