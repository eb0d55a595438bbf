"""What the bench scripts share: bad input is one line on stderr naming the script, exit code 2;
progress goes to stderr, so stdout carries only the result."""
import argparse
import os
import sys


def fail(message):
    print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
    sys.exit(2)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the usage too
        fail(message)


def log(message):
    print(message, file=sys.stderr, flush=True)
