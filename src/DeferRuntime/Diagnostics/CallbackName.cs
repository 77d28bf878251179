using System.Reflection;
using System.Runtime.CompilerServices;

namespace DeferRuntime.Diagnostics;

/// <summary>
/// The default name of a work item, tasklet or timer created without one: the method that was passed, as
/// its author would write it (<c>Ingest.Drain</c>), never a compiler-generated name.
/// </summary>
/// <remarks>
/// <para>C# compiles lambdas and local functions to methods with unspeakable names in compiler-generated
/// classes. They are read back as follows (the shapes Roslyn emits; any other shape still gives a name
/// without angle brackets):</para>
/// <list type="table">
/// <item><term>method group, static or instance: <c>Ingest.Drain</c></term><description><c>Ingest.Drain</c></description></item>
/// <item><term>lambda in a method: <c>&lt;Run&gt;b__3_0</c> on <c>Driver+&lt;&gt;c</c> or <c>Driver+&lt;&gt;c__DisplayClass3_0</c></term><description><c>Driver.Run (lambda)</c></description></item>
/// <item><term>lambda in top-level statements: <c>&lt;&lt;Main&gt;$&gt;b__0_17</c> on <c>Program+&lt;&gt;c</c></term><description><c>Program (lambda)</c></description></item>
/// <item><term>lambda in a constructor: <c>&lt;.ctor&gt;b__0_0</c></term><description><c>Driver.ctor (lambda)</c></description></item>
/// <item><term>local function: <c>&lt;Run&gt;g__Reset|3_0</c></term><description><c>Driver.Reset</c></description></item>
/// </list>
/// <para>Computed once, when the item is created (reflection and a string); the name is then a field, so
/// the hot paths that report it allocate nothing. Results are cached per method, so creating many items
/// with one callback costs one lookup each.</para>
/// </remarks>
internal static class CallbackName
{
    private static readonly ConditionalWeakTable<MethodInfo, string> Cache = new();

    /// <summary>The display name of <paramref name="callback"/>'s target method.</summary>
    public static string Of(Delegate callback)
    {
        ArgumentNullException.ThrowIfNull(callback);
        var method = callback.Method;
        return Cache.TryGetValue(method, out var name) ? name : Cache.GetValue(method, static m => Describe(m.DeclaringType, m.Name));
    }

    /// <summary>The display name of method <paramref name="methodName"/> declared on <paramref name="declaringType"/>.</summary>
    internal static string Describe(Type? declaringType, string methodName)
    {
        var type = UserType(declaringType);
        string typeName = type is null ? "" : Clean(type.Name);
        string member;
        if (methodName.StartsWith('<'))
        {
            // <Containing>b__N_M (lambda), <Containing>g__Local|N_M (local function), <Containing>d__N, ...:
            // the containing member is between the first '<' and its matching '>' (it may itself be <Main>$).
            int close = MatchingClose(methodName);
            string containing = close > 0 ? methodName[1..close] : methodName.Trim('<', '>');
            string rest = close > 0 ? methodName[(close + 1)..] : "";
            bool topLevel = containing is "<Main>$" or "Main$";
            containing = topLevel ? "" : MemberName(containing);
            if (rest.StartsWith("g__", StringComparison.Ordinal))
            {
                int bar = rest.IndexOf('|', StringComparison.Ordinal);
                member = bar > 3 ? rest[3..bar] : rest[3..];
            }
            else
            {
                member = containing.Length == 0 ? "(lambda)" : containing + " (lambda)";
                return typeName.Length == 0 ? member : containing.Length == 0 ? typeName + " " + member : typeName + "." + member;
            }
        }
        else
        {
            member = MemberName(methodName);
        }
        return typeName.Length == 0 ? member : typeName + "." + member;
    }

    /// <summary>The nearest declaring type that is not compiler-generated (<c>&lt;&gt;c</c>, <c>&lt;&gt;c__DisplayClass0_0</c>, state machines).</summary>
    private static Type? UserType(Type? type)
    {
        while (type is not null && type.Name.StartsWith('<') && type.DeclaringType is not null)
        {
            type = type.DeclaringType;
        }
        return type;
    }

    /// <summary>A type name without its generic arity (<c>Pool`1</c> → <c>Pool</c>) or angle brackets.</summary>
    private static string Clean(string name)
    {
        int tick = name.IndexOf('`', StringComparison.Ordinal);
        if (tick > 0)
        {
            name = name[..tick];
        }
        return name.Contains('<', StringComparison.Ordinal) ? name.Replace("<", "", StringComparison.Ordinal).Replace(">", "", StringComparison.Ordinal) : name;
    }

    /// <summary>A member name as written: constructors as <c>ctor</c>/<c>cctor</c>, explicit interface implementations by their last part.</summary>
    private static string MemberName(string name)
    {
        if (name is ".ctor" or ".cctor")
        {
            return name[1..];
        }
        int dot = name.LastIndexOf('.');
        if (dot >= 0 && dot < name.Length - 1)
        {
            name = name[(dot + 1)..];
        }
        return name.Contains('<', StringComparison.Ordinal) ? name.Replace("<", "", StringComparison.Ordinal).Replace(">", "", StringComparison.Ordinal) : name;
    }

    /// <summary>The index of the '&gt;' that closes the '&lt;' at index 0, or -1.</summary>
    private static int MatchingClose(string name)
    {
        int depth = 0;
        for (int i = 0; i < name.Length; i++)
        {
            if (name[i] == '<')
            {
                depth++;
            }
            else if (name[i] == '>' && --depth == 0)
            {
                return i;
            }
        }
        return -1;
    }
}
