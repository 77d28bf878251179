using Spectre.Console;
using Spectre.Console.Rendering;

namespace DeferRuntime.Cli.Storm.Report;

/// <summary>
/// A table that never squeezes a number: when it is wider than the console it is split into several
/// tables, each with the key columns (the path, the CPU) repeated and as many of the other columns as fit,
/// in order. A column is never wrapped.
/// </summary>
internal sealed class SplitTable(string title, int keyColumns)
{
    private readonly List<(string Header, bool Right)> _columns = [];
    private readonly List<string[]> _rows = [];

    public SplitTable Column(string header, bool right = true)
    {
        _columns.Add((header, right));
        return this;
    }

    public SplitTable Columns(params string[] headers)
    {
        foreach (string h in headers)
        {
            Column(h);
        }
        return this;
    }

    /// <summary>One row; cells are markup, one per column.</summary>
    public void AddRow(params string[] cells)
    {
        if (cells.Length != _columns.Count)
        {
            throw new ArgumentException($"{cells.Length} cells for {_columns.Count} columns", nameof(cells));
        }
        _rows.Add(cells);
    }

    public void Write(IAnsiConsole console)
    {
        int width = console.Profile.Width;
        var keys = Enumerable.Range(0, keyColumns).ToList();
        var groups = new List<List<int>>();
        var current = new List<int>();
        for (int c = keyColumns; c < _columns.Count; c++)
        {
            var candidate = new List<int>(current) { c };
            if (current.Count > 0 && Measure([.. keys, .. candidate]) > width)
            {
                groups.Add(current);
                candidate = [c];
            }
            current = candidate;
        }
        if (current.Count > 0 || groups.Count == 0)
        {
            groups.Add(current);
        }
        for (int g = 0; g < groups.Count; g++)
        {
            string suffix = groups.Count > 1 ? $" ({g + 1}/{groups.Count})" : "";
            console.Write(Build([.. keys, .. groups[g]], title + suffix));
        }
    }

    private Table Build(IReadOnlyList<int> columns, string? caption)
    {
        var table = new Table().Border(TableBorder.Simple);
        if (caption is not null)
        {
            table.Title(caption);
        }
        foreach (int c in columns)
        {
            // One space between columns (the default is three): more columns in 80.
            var column = new TableColumn(_columns[c].Header).NoWrap().Padding(new Padding(1, 0, 0, 0));
            table.AddColumn(_columns[c].Right ? column.RightAligned() : column);
        }
        foreach (var row in _rows)
        {
            table.AddRow(columns.Select(c => row[c]).ToArray());
        }
        return table;
    }

    /// <summary>The width the table takes when nothing constrains it (rendered, not estimated).</summary>
    private int Measure(IReadOnlyList<int> columns)
    {
        var options = RenderOptions.Create(AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(TextWriter.Null),
        }));
        return ((IRenderable)Build(columns, caption: null)).Measure(options, int.MaxValue / 2).Max;
    }
}
