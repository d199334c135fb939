"""UI strings in Simplified Chinese (default) and English."""

from __future__ import annotations

from typing import Final

DEFAULT_LOCALE: Final = "zh-CN"
LOCALES: Final = ("zh-CN", "en")

MESSAGES: Final[dict[str, dict[str, str]]] = {
    "app.title": {"zh-CN": "孝感市智慧养老服务平台", "en": "Xiaogan Smart Elderly-Care Platform"},
    "login.title": {"zh-CN": "登录", "en": "Sign in"},
    "login.user": {"zh-CN": "用户名或手机号", "en": "Username or phone"},
    "login.password": {"zh-CN": "密码", "en": "Password"},
    "login.submit": {"zh-CN": "登录", "en": "Sign in"},
    "login.failed": {"zh-CN": "用户名或密码错误", "en": "Wrong username or password"},
    "login.locked": {
        "zh-CN": "失败次数过多，账户已临时锁定，请稍后再试",
        "en": "Too many failed attempts; try again later",
    },
    "login.rate": {
        "zh-CN": "此网络登录失败次数过多，请稍后再试",
        "en": "Too many failed sign-ins from this network; try again later",
    },
    "logout": {"zh-CN": "退出", "en": "Sign out"},
    "password.title": {"zh-CN": "修改密码", "en": "Change password"},
    "password.current": {"zh-CN": "当前密码", "en": "Current password"},
    "password.new": {"zh-CN": "新密码（至少 10 个字符）", "en": "New password (10 characters or more)"},
    "password.confirm": {"zh-CN": "再次输入新密码", "en": "New password again"},
    "password.submit": {"zh-CN": "保存新密码", "en": "Save the new password"},
    "password.required": {
        "zh-CN": "管理员已重置您的密码，请先设置新密码。",
        "en": "An administrator reset your password; choose a new one first.",
    },
    "password.done": {
        "zh-CN": "密码已修改，您在其他设备上的登录已退出。",
        "en": "Password changed; your other sessions have been signed out.",
    },
    "password.mismatch": {"zh-CN": "两次输入的新密码不一致", "en": "The two new passwords differ"},
    "password.rules": {
        "zh-CN": "新密码须为 10 至 200 个字符",
        "en": "The new password must be 10 to 200 characters",
    },
    "password.failed": {"zh-CN": "当前密码错误", "en": "The current password is wrong"},
    "password.unchanged": {"zh-CN": "新密码不能与当前密码相同", "en": "The new password must differ"},
    "home.welcome": {"zh-CN": "欢迎", "en": "Welcome"},
    "home.role": {"zh-CN": "角色", "en": "Role"},
    "home.api_docs": {"zh-CN": "接口文档", "en": "API docs"},
    "home.figures": {"zh-CN": "平台概况", "en": "Platform at a glance"},
    "fig.elders": {"zh-CN": "在册老人", "en": "Registered elders"},
    "fig.living.alone": {"zh-CN": "独居老人", "en": "Living alone"},
    "fig.living.empty_nest": {"zh-CN": "空巢老人", "en": "Empty-nest"},
    "fig.living.with_family": {"zh-CN": "与家人同住", "en": "Living with family"},
    "fig.category.destitute": {"zh-CN": "特困供养", "en": "State-supported destitute"},
    "fig.category.subsistence": {"zh-CN": "低保", "en": "Subsistence allowance"},
    "fig.category.low_income": {"zh-CN": "低保边缘/低收入", "en": "Low income"},
    "fig.category.family_planning": {"zh-CN": "计划生育特殊家庭", "en": "Special family-planning family"},
    "fig.category.veteran": {"zh-CN": "重点优抚对象", "en": "Priority veterans"},
    "fig.category.elderly_alone": {"zh-CN": "高龄独居/空巢", "en": "80+ alone or empty-nest"},
    "fig.providers": {"zh-CN": "服务机构", "en": "Providers"},
    "fig.caregivers": {"zh-CN": "护理员", "en": "Caregivers"},
    "fig.devices": {"zh-CN": "智能设备", "en": "Devices"},
    "fig.devices_online": {"zh-CN": "在线设备", "en": "Devices online"},
    "fig.scope": {"zh-CN": "数据范围", "en": "Scope"},
    "scope.all": {"zh-CN": "全市", "en": "Whole city"},
    "scope.districts": {"zh-CN": "{n} 个区县", "en": "{n} district(s)"},
    "scope.own": {"zh-CN": "本人相关", "en": "Your own records"},
    "lang.switch": {"zh-CN": "English", "en": "中文"},
    "role.elder": {"zh-CN": "老人", "en": "Elder"},
    "role.family": {"zh-CN": "家属", "en": "Family"},
    "role.caregiver": {"zh-CN": "护理员", "en": "Caregiver"},
    "role.provider_admin": {"zh-CN": "服务机构管理员", "en": "Provider admin"},
    "role.operator": {"zh-CN": "坐席员", "en": "Operator"},
    "role.supervisor": {"zh-CN": "值班主管", "en": "Supervisor"},
    "role.civil_affairs": {"zh-CN": "民政干部", "en": "Civil-affairs officer"},
    "role.admin": {"zh-CN": "系统管理员", "en": "Administrator"},
    # An order's next step (the API's ``next_step.code``); {minutes} from ``act_by``.
    "order.next.operator_queue": {
        "zh-CN": "暂无护理员可立即接单，已转呼叫中心人工派单，"
        "将在 {minutes} 分钟内安排护理员。紧急情况请拨打热线。",
        "en": "No caregiver could take the order at once; the call centre will assign one by hand within "
        "{minutes} minutes. In an emergency, call the hotline.",
    },
    "order.next.awaiting_caregiver": {
        "zh-CN": "已通知护理员接单，如未接单将依次通知其他护理员或转呼叫中心。",
        "en": "A caregiver has been asked to accept; if not, the next one or the call centre takes over.",
    },
    "order.next.awaiting_plan": {
        "zh-CN": "订单将在服务前一天排入服务机构的日计划并安排护理员。",
        "en": "The order gets a caregiver in the provider's day plan, built the day before.",
    },
}


def pick_locale(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    for candidate in (query, cookie):
        if candidate in LOCALES:
            return candidate
    if accept_language and accept_language.lower().startswith("en"):
        return "en"
    return DEFAULT_LOCALE


def translator(locale: str) -> dict[str, str]:
    return {key: texts.get(locale, texts[DEFAULT_LOCALE]) for key, texts in MESSAGES.items()}
