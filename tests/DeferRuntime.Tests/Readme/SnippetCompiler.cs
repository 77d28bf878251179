using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace DeferRuntime.Tests.Readme;

/// <summary>
/// Compiles a C# source file as a user's project would: against the framework (the test host's trusted
/// platform assemblies, ASP.NET Core included) and the DeferRuntime assemblies, with the SDK's implicit
/// usings; a program when the file has top-level statements, else a library.
/// </summary>
internal static class SnippetCompiler
{
    private static readonly string[] SdkUsings =
        ["System", "System.Collections.Generic", "System.IO", "System.Linq", "System.Net.Http", "System.Threading", "System.Threading.Tasks"];

    private static readonly string[] WebUsings =
        ["System.Net.Http.Json", "Microsoft.AspNetCore.Builder", "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Http", "Microsoft.AspNetCore.Routing",
         "Microsoft.Extensions.Configuration", "Microsoft.Extensions.DependencyInjection", "Microsoft.Extensions.Hosting", "Microsoft.Extensions.Logging"];

    private static readonly Lazy<ImmutableArray<MetadataReference>> References = new(LoadReferences);

    /// <summary>The compiled assembly, or null; <paramref name="errors"/> lists the errors (empty when it compiled).</summary>
    public static byte[]? Compile(string source, bool web, string name, out IReadOnlyList<string> errors)
    {
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        var tree = CSharpSyntaxTree.ParseText(source, parse, path: name + ".cs");
        var usings = string.Concat((web ? SdkUsings.Concat(WebUsings) : SdkUsings).Select(u => $"global using global::{u};\n"));
        var usingsTree = CSharpSyntaxTree.ParseText(usings, parse, path: "GlobalUsings.g.cs");
        bool program = tree.GetCompilationUnitRoot().Members.OfType<GlobalStatementSyntax>().Any();
        var options = new CSharpCompilationOptions(program ? OutputKind.ConsoleApplication : OutputKind.DynamicallyLinkedLibrary,
            nullableContextOptions: NullableContextOptions.Enable, allowUnsafe: true);
        var compilation = CSharpCompilation.Create(name, [tree, usingsTree], References.Value, options);
        using var pe = new MemoryStream();
        var result = compilation.Emit(pe);
        errors = result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).Select(d => d.ToString()).ToArray();
        return result.Success ? pe.ToArray() : null;
    }

    private static ImmutableArray<MetadataReference> LoadReferences()
    {
        var paths = ((string?)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).ToList();
        // The DeferRuntime assemblies, wherever the host put them.
        paths.AddRange(new[] { typeof(Runtime), typeof(global::DeferRuntime.Hosting.DeferRuntimeHost), typeof(global::DeferRuntime.Torture.TortureRunner) }.Select(t => t.Assembly.Location));
        return paths.Where(File.Exists)
            .GroupBy(p => Path.GetFileName(p), StringComparer.OrdinalIgnoreCase)
            .Select(g => (MetadataReference)MetadataReference.CreateFromFile(g.First()))
            .ToImmutableArray();
    }
}
