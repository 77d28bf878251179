using System.Text.RegularExpressions;

namespace DeferRuntime.Tests.Readme;

/// <summary>
/// Every C# block of README.md (```csharp or ```cs) compiles, as the complete file it claims to be (the
/// convention is written in a comment above the README's first snippet): with top-level statements a
/// program, else a library; an HTML comment <c>snippet: web</c> just before a block gives it the
/// implicit usings of an ASP.NET Core project.
/// </summary>
public partial class ReadmeSnippetTests
{
    /// <summary>One C# block: the line of its opening fence, its code, and whether it is a web project's file.</summary>
    internal sealed record Snippet(int Line, string Code, bool Web);

    [GeneratedRegex(@"^```(?:csharp|cs)[ \t]*$")]
    private static partial Regex OpeningFence();

    /// <summary>README.md at the repository root: found by walking up from the test assembly's directory.</summary>
    internal static string FindReadme()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string readme = Path.Combine(dir.FullName, "README.md");
            if (File.Exists(readme) && File.Exists(Path.Combine(dir.FullName, "DeferRuntime.sln")))
            {
                return readme;
            }
        }
        throw new FileNotFoundException($"README.md (beside DeferRuntime.sln) above {AppContext.BaseDirectory}");
    }

    internal static List<Snippet> Extract(string[] lines)
    {
        var snippets = new List<Snippet>();
        for (int i = 0; i < lines.Length; i++)
        {
            if (!OpeningFence().IsMatch(lines[i]))
            {
                continue;
            }
            int open = i;
            var code = new List<string>();
            for (i++; i < lines.Length && !lines[i].StartsWith("```", StringComparison.Ordinal); i++)
            {
                code.Add(lines[i]);
            }
            Assert.True(i < lines.Length, $"README.md line {open + 1}: a C# block is never closed");
            int previous = open - 1;
            while (previous >= 0 && string.IsNullOrWhiteSpace(lines[previous]))
            {
                previous--;
            }
            bool web = previous >= 0 && lines[previous].Trim() == "<!-- snippet: web -->";
            snippets.Add(new Snippet(open + 1, string.Join('\n', code), web));
        }
        return snippets;
    }

    private static List<Snippet> ReadmeSnippets() => Extract(File.ReadAllLines(FindReadme()));

    public static TheoryData<int> SnippetLines()
    {
        var data = new TheoryData<int>();
        foreach (var snippet in ReadmeSnippets())
        {
            data.Add(snippet.Line);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(SnippetLines))]
    public void The_csharp_block_at_this_readme_line_compiles(int line)
    {
        var snippet = ReadmeSnippets().Single(s => s.Line == line);
        var assembly = SnippetCompiler.Compile(snippet.Code, snippet.Web, $"ReadmeLine{line}", out var errors);
        Assert.True(assembly is not null, $"README.md's C# block at line {line} does not compile:\n{string.Join('\n', errors)}");
    }

    [Fact]
    public void The_readme_has_its_csharp_blocks()
    {
        var snippets = ReadmeSnippets();
        Assert.True(snippets.Count >= 7, $"found {snippets.Count} C# blocks in README.md");
        Assert.Contains(snippets, s => s.Web);
    }

    [Fact]
    public void A_block_that_does_not_compile_is_caught()
    {
        // The checker itself: a block calling what does not exist, and one missing a using, must fail.
        var lines = "text\n```csharp\nusing DeferRuntime;\n\nusing var runtime = Runtime.Boot();\nruntime.NoSuchMethod();\n```\n```cs\nvar wq = default(Workqueue);\n```\n".Split('\n');
        var snippets = Extract(lines);
        Assert.Equal([2, 8], snippets.Select(s => s.Line));
        foreach (var snippet in snippets)
        {
            Assert.Null(SnippetCompiler.Compile(snippet.Code, snippet.Web, "Broken", out var errors));
            Assert.NotEmpty(errors);
        }
        Assert.NotNull(SnippetCompiler.Compile("using DeferRuntime;\n\nusing var runtime = Runtime.Boot();\n", web: false, "Fine", out _));
    }
}
