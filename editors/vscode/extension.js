// Starts `nndsl lsp` (or the command the `nndsl.server.command` setting names) for .nn files.
"use strict";
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const cmd = vscode.workspace.getConfiguration("nndsl").get("server.command", ["nndsl", "lsp"]);
  const server = { command: cmd[0], args: cmd.slice(1), transport: TransportKind.stdio };
  client = new LanguageClient("nndsl", "nndsl language server", { run: server, debug: server }, {
    documentSelector: [{ scheme: "file", language: "nndsl" }, { scheme: "untitled", language: "nndsl" }],
  });
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
