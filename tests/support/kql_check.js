// Compiles KQL texts with Microsoft's Kusto language service (npm @kusto/language-service-next) and prints each
// text's diagnostics. Input on stdin, JSON: {"tables": {"Name": [["Column", "kustoType"], ...]}, "queries":
// {"id": "text"}}. Output on stdout, JSON: {"id": [{"severity", "code", "message", "start", "length"}]}.
// The tables are the only database the queries see, so an unknown table or column, a wrong type or bad syntax is
// an error, exactly as in the Log Analytics query editor (which uses the same language service).
'use strict';

require('@kusto/language-service-next/bridge.min.js');
require('@kusto/language-service-next/Kusto.Language.Bridge.min.js');

const Symbols = Kusto.Language.Symbols;

function readStdin() {
  return require('fs').readFileSync(0, 'utf8');
}

function globalsFor(tables) {
  const symbols = Object.entries(tables).map(([name, cols]) =>
    Symbols.TableSymbol.From('(' + cols.map(([col, type]) => `['${col}']:${type}`).join(', ') + ')').WithName(name));
  const database = new Symbols.DatabaseSymbol.$ctor2('workspace', null, symbols);
  return Kusto.Language.GlobalState.Default.WithDatabase(database);
}

function diagnostics(text, globals) {
  const code = Kusto.Language.KustoCode.ParseAndAnalyze(text, globals);
  const list = code.GetDiagnostics();
  const result = [];
  for (let i = 0; i < list.Count; i++) {
    const d = list.getItem(i);
    result.push({ severity: d.Severity, code: d.Code, message: d.Message, start: d.Start, length: d.Length });
  }
  return result;
}

const input = JSON.parse(readStdin());
const globals = globalsFor(input.tables);
const output = {};
for (const [id, text] of Object.entries(input.queries)) {
  output[id] = diagnostics(text, globals);
}
process.stdout.write(JSON.stringify(output));
